"""What a policy may judge before any row is read: a run's facts, from its typed settings."""

from __future__ import annotations

from privtrain.policy import RunFacts


def run_facts(s) -> RunFacts:
    """The :class:`~privtrain.policy.RunFacts` of typed settings (``config.RunSettings``)."""
    from privtrain.crypto.keys import configured
    from privtrain.policy import source_name

    spec = s.dataset
    source = source_name(spec)
    table = spec.loader not in ("image_folder", "custom", "synthetic")  # what the PII gate scans (docs/pii.md)
    units: tuple[str, ...]  # the privacy units the run protects: examples, and for federated runs also clients
    if s.recipe == "synthetic":
        private, units = s.synth.private, ("example",)
        target = float(s.synth.params["epsilon"]) if private and s.synth.params.get("epsilon") is not None else None
        delta = s.synth.params.get("delta") if private else None
        return RunFacts(
            "synthetic",
            source,
            spec.tags,
            private,
            units,
            target,
            delta,
            spec.infer_schema,
            table and s.synth.pii_check,
            private,
            purpose=s.purpose,
            region=s.region,
            encrypted=configured(s.key_file),
        )
    p = s.privacy
    # federated runs charge the population's clients and the source's examples, except local DP (examples only)
    units = ("client", "example") if s.recipe == "federated" and p.name != "dp" else ("example",)
    private = p.private and not s.reproducible_noise and not spec.infer_schema  # both void the guarantee
    one_run = s.audit.one_run is not None and s.audit.one_run.enabled
    nodes = s.fl.regions if s.fl is not None else ()
    monitoring = s.recipe == "dp_sgd" and s.monitor.reference  # DP reference statistics for drift monitoring
    return RunFacts(
        s.recipe,
        source,
        spec.tags,
        private,
        units,
        p.target_epsilon,
        p.delta,
        spec.infer_schema,
        table,
        one_run_audit=one_run,
        purpose=s.purpose,
        region=s.region,
        node_regions=tuple(nodes),
        encrypted=configured(s.key_file),
        monitoring=monitoring,
    )
