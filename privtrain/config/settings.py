"""From a composed config to typed settings: the one place OmegaConf values become plain, checked values.

Every value is type-checked here, with one line naming the key and what it expects; a key the
recipe does not have is refused (never silently ignored, so a typo cannot lead to a charged run
with defaults). Nothing below the recipes imports this module or OmegaConf.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from privtrain.audit.settings import AuditSettings, OneRunSettings
from privtrain.errors import UserError
from privtrain.ledger.model import LedgerSettings
from privtrain.monitoring.settings import MonitorSettings
from privtrain.privacy.spec import PrivacySpec
from privtrain.synthetic.settings import SynthSettings
from privtrain.tracking import KINDS, TrackingSettings

if TYPE_CHECKING:  # these live beside pandas and torch: imported when a run is typed, not by `privtrain ls`
    from privtrain.data import DatasetSpec
    from privtrain.federated.settings import FlSettings
    from privtrain.models import ModelSpec
    from privtrain.training import TrainSettings

MAX_INT = 2**63 - 1  # what NumPy and PyTorch hold in an int64
MAX_SEED = 2**32 - 1

RECIPE_GROUPS = {
    "dp_sgd": ("model", "privacy", "recipe"),
    "federated": ("model", "privacy", "fl", "recipe"),
    "synthetic": ("synth",),
}


@dataclass(frozen=True)
class RunSettings:
    """Everything a recipe needs, typed. ``config_yaml`` is what the run writes as ``config.yaml``."""

    recipe: str
    seed: int
    dataset: DatasetSpec
    ledger: LedgerSettings
    audit: AuditSettings
    config_hash: str
    config_yaml: str
    model: ModelSpec | None = None
    train: TrainSettings | None = None  # epochs resolved by the recipe once it knows the rows
    privacy: PrivacySpec | None = None
    fl: FlSettings | None = None
    synth: SynthSettings | None = None
    resume: str | None = None
    reproducible_noise: bool = False  # debugging only: noise from `seed`, guarantee void
    tracking: TrackingSettings = TrackingSettings()
    device: str = "auto"  # dp_sgd: auto | cpu | cuda | cuda:N (privtrain.devices)
    purpose: str | None = None  # run.purpose: what the run is for (checked against the source's consent)
    region: str | None = None  # site.region: where the run executes (checked against the source's regions)
    key_file: str | None = None  # artifacts.key_file: the key that seals artifacts (else the environment's)
    monitor: MonitorSettings = MonitorSettings()  # dp_sgd: DP reference statistics (privtrain.monitoring)


def settings(recipe: str, cfg) -> RunSettings:
    """Typed settings of a composed config.

    Raises:
        UserError: a required key is missing, a value has the wrong type or range, or a key is unknown.
    """
    from privtrain.config.compose import config_hash, missing_keys, to_container, to_yaml

    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} is required; pass {missing[0]}=VALUE.")
    d = {k: v for k, v in to_container(cfg).items() if k != "hydra"}
    if recipe == "synthetic" and (d.get("dataset") or {}).get("loader") in ("image_folder", "custom"):
        raise UserError(
            f"dataset={d['dataset']['loader']}: synthetic data needs a table (csv, parquet or a built-in "
            "dataset); train on the images with privtrain run dp_sgd."
        )
    if recipe != "dp_sgd" and (
        (d.get("dataset") or {}).get("loader") == "text" or (d.get("model") or {}).get("name") == "pretrained"
    ):
        raise UserError(
            f"dataset=text and model=pretrained run with privtrain run dp_sgd; the {recipe} recipe does not "
            "take them yet (docs/pretrained.md)."
        )
    for group in ("model", "privacy", "fl", "synth"):
        if d.get(group) is not None and group not in RECIPE_GROUPS.get(recipe, ()):
            raise UserError(
                f"{group}=... does not apply to the {recipe} recipe; drop it "
                f"({_GROUP_HINTS.get((recipe, group), 'see privtrain ls')})."
            )
    r = _Reader(d, recipe)
    out = dict(
        recipe=recipe,
        seed=r.seed("seed"),
        dataset=_dataset(r),
        ledger=_ledger(r),
        audit=_audit(r),
        config_hash=config_hash(cfg),
        config_yaml=to_yaml(cfg),
        reproducible_noise=r.bool("reproducible_noise") if r.has("reproducible_noise") else False,
        tracking=_tracking(r),
        **_governance(r),
        key_file=r.opt_str("artifacts.key_file") if r.has("artifacts.key_file") else None,
    )
    if recipe == "dp_sgd":
        out.update(
            model=_model(r),
            train=_train(r),
            privacy=_privacy(r, "privacy"),
            resume=r.opt_str("resume"),
            device=_device(r),
            monitor=_monitor(r),
        )
    elif recipe == "federated":
        out.update(model=_model(r), privacy=_privacy(r, "privacy"), fl=_fl(r))
    elif recipe == "synthetic":
        out.update(synth=_synth(r))
    r.refuse_unread()
    return RunSettings(**out)


_GROUP_HINTS = {
    ("synthetic", "model"): "synth.utility.classifier picks the utility classifier",
    ("synthetic", "privacy"): "a DP synthesizer is synth=dp_gaussian_copula with synth.epsilon",
    ("synthetic", "fl"): "federated settings belong to `privtrain run federated`",
    ("dp_sgd", "synth"): "synthesizers belong to `privtrain run synthetic`",
    ("federated", "synth"): "synthesizers belong to `privtrain run synthetic`",
}


def check_types(recipe: str, cfg) -> None:
    """Raise the UserError :func:`settings` would raise; for the CLI, before Hydra starts a run."""
    settings(recipe, cfg)


# --- a reader that type-checks and remembers what it read ------------------------------------


class _Reader:
    """Reads dotted keys from a plain dict; unknown keys (never read) are refused at the end."""

    def __init__(self, data: dict, recipe: str) -> None:
        self.data, self.recipe = data, recipe
        self.read: set[str] = set()
        self.free: set[str] = set()  # free-form mappings (e.g. dataset.schema): any key inside is fine

    def raw(self, key: str):
        node = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise UserError(f"{key} is required; pass {key}=VALUE.")
            node = node[part]
        self.read.add(key)
        return node

    def has(self, key: str) -> bool:
        node = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def mapping(self, key: str) -> dict | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, dict):
            raise UserError(f"{key}={value!r} must be a mapping, e.g. {key}='{{a: 1}}'.")
        self.free.add(key)
        return value

    def num(
        self,
        key: str,
        *,
        optional: bool = False,
        positive: bool = False,
        minimum: float | None = None,
        below: float | None = None,
    ):
        """A finite number (inf is refused: no setting means "unbounded" by it); ``below``: an open upper bound."""
        value = self.raw(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
            raise UserError(f"{key}={value!r} must be a number{' or null' if optional else ''}.")
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"{key}={value:g} must be a finite number.")
        if positive and not value > 0:
            raise UserError(f"{key}={value:g} must be > 0.")
        if minimum is not None and value < minimum:
            raise UserError(f"{key}={value:g} must be at least {minimum:g}.")
        if below is not None and not value < below:
            raise UserError(f"{key}={value:g} must be below {below:g}.")
        return value

    def int(self, key: str, *, optional: bool = False, minimum: int | None = None, maximum: int = MAX_INT):
        value = self.raw(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise UserError(f"{key}={value!r} must be a whole number{' or null' if optional else ''}.")
        value = int(value)
        if minimum is not None and value < minimum:
            raise UserError(f"{key}={value} must be at least {minimum}.")
        if value > maximum:
            raise UserError(f"{key}={value:.4g} is too large; use a whole number up to {maximum}.")
        return value

    def seed(self, key: str, *, optional: bool = False):
        """A seed: NumPy, PyTorch and scikit-learn all take 0 .. 2**32 - 1."""
        return self.int(key, optional=optional, minimum=0, maximum=MAX_SEED)

    def bool(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise UserError(f"{key}={value!r} must be true or false.")
        return value

    def str(self, key: str, options: tuple[str, ...] | None = None) -> str:
        value = self.raw(key)
        if value is None or isinstance(value, (dict, list, bool)):
            raise UserError(f"{key}={value!r} must be text" + (f": one of {', '.join(options)}." if options else "."))
        value = str(value)
        if options is not None and value not in options:
            raise UserError(f"{key}={value!r} is unknown; choose one of {', '.join(options)}.")
        return value

    # below, the methods str, bool and list shadow the builtins in annotations: name the builtins
    def opt_str(self, key: builtins.str, options: tuple[builtins.str, ...] | None = None) -> builtins.str | None:
        return None if self.raw(key) is None else self.str(key, options)

    def list(self, key: builtins.str, *, optional: builtins.bool = False) -> builtins.list | None:
        value = self.raw(key)
        if value is None and optional:
            return None
        if not isinstance(value, list):
            raise UserError(f"{key}={value!r} must be a list, e.g. {key}=[a,b].")
        return value

    def refuse_unread(self) -> None:
        """A key nobody read is a typo or a setting of another recipe: refuse it by name."""
        from privtrain.config.compose import unknown_key_message

        known = sorted(self.read)
        for key in _leaves(self.data):
            if key in self.read or any(key == f or key.startswith(f + ".") for f in self.free):
                continue
            if any(r.startswith(key + ".") for r in self.read):
                continue  # an intermediate node whose leaves were read
            raise UserError(unknown_key_message(key, self.recipe, known))


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(_leaves(v, path + "."))
        else:
            out.append(path)
    return out


# --- the groups --------------------------------------------------------------------------


class _DatasetExtras(TypedDict, total=False):
    """The :class:`DatasetSpec` fields some loaders have: left out, a field keeps its default."""

    tags: tuple[str, ...]
    image: dict | None
    factory: str | None
    size: int | None
    classes: tuple | None
    kwargs: dict
    sensitive: tuple[str, ...]
    text: dict
    public_n: int | None
    drop: tuple[str, ...]
    pii_allow: tuple[str, ...]


def _names(r: _Reader, key: str) -> tuple[str, ...]:
    """A list of column names (null: none)."""
    return tuple(map(str, r.list(key, optional=True) or ()))


def _dataset(r: _Reader) -> DatasetSpec:
    from privtrain.data import LOADERS, DatasetSpec
    from privtrain.sources import check_name

    loader = r.str("dataset.loader", LOADERS)
    source = r.opt_str("dataset.source")
    if source is not None:
        source = check_name(source)
    derived_from = r.opt_str("dataset.derived_from") if r.has("dataset.derived_from") else None
    if derived_from is not None:
        derived_from = check_name(derived_from, "dataset.derived_from")
    features = r.list("dataset.features", optional=True)
    tags = r.list("dataset.tags", optional=True) if r.has("dataset.tags") else None
    extra: _DatasetExtras = {"tags": tuple(str(t) for t in tags or ())}
    if r.has("dataset.image"):
        extra["image"] = r.mapping("dataset.image")
    if r.has("dataset._target_"):  # dataset=custom: every other key is the factory's keyword argument
        extra["factory"] = r.opt_str("dataset._target_")
        extra["size"] = r.int("dataset.size", optional=True, minimum=1)
        classes = r.list("dataset.classes", optional=True)
        extra["classes"] = tuple(classes) if classes else None
        known = {
            "loader",
            "source",
            "derived_from",
            "tags",
            "path",
            "target",
            "id_column",
            "features",
            "schema",
            "infer_schema",
            "test_size",
            "_target_",
            "size",
            "classes",
            "drop",
            "pii",
            "public_n",
        }
        extra["kwargs"] = {k: r.raw(f"dataset.{k}") for k in r.raw("dataset") if k not in known}
        r.free.update(f"dataset.{k}" for k in extra["kwargs"])
    if r.has("dataset.sensitive"):  # fairness: per-group accuracy on the held-out split (privtrain.monitoring)
        extra["sensitive"] = _names(r, "dataset.sensitive")
        if extra["sensitive"] and r.recipe != "dp_sgd":
            raise UserError(
                f"dataset.sensitive: per-group accuracy is reported by the dp_sgd recipe only; drop it "
                f"for {r.recipe} (docs/governance/fairness.md)."
            )
    if r.has("dataset.text_column"):  # dataset=text (privtrain.data.text)
        extra["text"] = {
            "column": r.str("dataset.text_column"),
            "max_length": r.int("dataset.max_length", minimum=2),
            "tokenizer": r.opt_str("dataset.tokenizer"),
        }
    if r.has("dataset.public_n"):  # the public size that fixes DP-SGD's sampling rate and steps
        extra["public_n"] = r.int("dataset.public_n", optional=True, minimum=1)
    if r.has("dataset.drop"):  # csv and parquet only
        extra["drop"] = _names(r, "dataset.drop")
    if r.has("dataset.pii.allow"):  # csv and parquet only
        extra["pii_allow"] = _names(r, "dataset.pii.allow")
    return DatasetSpec(
        loader=loader,
        source=source,
        derived_from=derived_from,
        path=r.opt_str("dataset.path"),
        target=r.opt_str("dataset.target"),
        id_column=r.opt_str("dataset.id_column"),
        features=tuple(map(str, features)) if features else None,
        schema=r.mapping("dataset.schema"),
        infer_schema=r.bool("dataset.infer_schema"),
        test_size=r.num("dataset.test_size"),
        **extra,
    )


def _model(r: _Reader) -> ModelSpec:
    from privtrain.models import ModelSpec

    name = r.str("model.name")
    if name == "pretrained":  # local weights and a fine-tuning mode (privtrain.pretrained.spec)
        from privtrain.pretrained.spec import from_mapping

        node = r.raw("model")
        r.free.update(f"model.{k}" for k in node)
        return ModelSpec(name=name, hidden=(), channels=(), pretrained=from_mapping(node).to_dict())
    target = r.opt_str("model._target_") if r.has("model._target_") else None
    if name == "custom":
        known = {"name", "_target_", "fix"}
        kwargs = {k: r.raw(f"model.{k}") for k in r.raw("model") if k not in known}
        r.free.update(f"model.{k}" for k in kwargs)
        return ModelSpec(name="custom", hidden=(), channels=(), target=target, kwargs=kwargs, fix=r.bool("model.fix"))
    if target is not None:
        raise UserError(
            f"model._target_={target} needs model=custom (model={name}'s own settings do not apply): "
            f"privtrain run ... model=custom model._target_={target} +model.ARG=VALUE"
        )
    hidden = r.list("model.hidden", optional=True) or []
    channels = r.list("model.channels", optional=True) or []
    for key, values in (("model.hidden", hidden), ("model.channels", channels)):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise UserError(f"{key}={values!r} must list positive whole numbers, e.g. {key}=[64,32].")
    return ModelSpec(
        name=name,
        hidden=tuple(hidden),
        activation=r.str("model.activation"),
        channels=tuple(channels),
        groups=r.int("model.groups", minimum=1),
    )


def _train(r: _Reader):
    from privtrain.training import TrainSettings

    r.str("recipe.name")
    return TrainSettings(
        steps=r.int("recipe.steps", optional=True),
        epochs=r.int("recipe.epochs", optional=True, minimum=1),
        batch_size=r.int("recipe.batch_size", minimum=1),
        max_physical_batch_size=r.int("recipe.max_physical_batch_size", minimum=1),
        optimizer=r.str("recipe.optimizer", ("adam", "sgd")),
        lr=r.num("recipe.lr", positive=True),
        momentum=r.num("recipe.momentum", minimum=0.0),
        ema=r.num("recipe.ema", minimum=0.0, below=1.0),  # the decay of an average: 1 would freeze it
        grad_sample_mode=r.str("recipe.grad_sample_mode"),
        clipping=r.str("recipe.clipping"),
        progress=r.bool("recipe.progress"),
        threads=r.int("recipe.threads", minimum=1),
        amp=r.bool("recipe.amp") if r.has("recipe.amp") else False,
    )


def _device(r: _Reader) -> str:
    from privtrain import devices

    device = r.str("device") if r.has("device") else "auto"
    devices.check(device)
    return device


def _privacy(r: _Reader, at: str) -> PrivacySpec:
    from privtrain.privacy.spec import NAMES

    name = r.str(f"{at}.name", NAMES) if at == "privacy" else "dp"
    spec = dict(
        name=name,
        target_epsilon=r.num(f"{at}.target_epsilon", optional=True),
        delta=r.num(f"{at}.delta", optional=True),
        noise_multiplier=r.num(f"{at}.noise_multiplier", optional=True),
        max_grad_norm=r.num(f"{at}.max_grad_norm", optional=True),
        accountant=r.opt_str(f"{at}.accountant"),
    )
    if name in ("central", "central_local"):
        spec.update(
            clipping_norm=r.num(f"{at}.clipping_norm", optional=True), clipping_side=r.str(f"{at}.clipping_side")
        )
    if name == "central_local":
        spec["local"] = _privacy(r, f"{at}.local")
    return PrivacySpec(**spec)


def _governance(r: _Reader) -> dict[str, str | None]:
    """``run.purpose`` and ``site.region`` (docs/governance/provenance.md)."""
    from privtrain.ledger.consent import check_words

    out: dict[str, str | None] = {}
    for key, name in (("run.purpose", "purpose"), ("site.region", "region")):
        value = r.opt_str(key) if r.has(key) else None
        out[name] = None if value is None else check_words([value], key)[0]
    return out


def _ledger(r: _Reader) -> LedgerSettings:
    eps = r.num("ledger.default_budget.epsilon", optional=True)
    delta = r.num("ledger.default_budget.delta", optional=True)
    if eps is not None and delta is None:
        raise UserError(
            "ledger.default_budget.delta is missing; set it with the epsilon, e.g. ledger.default_budget.delta=1e-5."
        )
    return LedgerSettings(
        path=r.opt_str("ledger.path"),
        allow_non_private=r.bool("ledger.allow_non_private"),
        policy=r.opt_str("ledger.policy") if r.has("ledger.policy") else None,
        default_budget=None if eps is None else (eps, delta),
        plan_only=r.bool("ledger.plan_only"),
    )


def _tracking(r: _Reader) -> TrackingSettings:
    if not r.has("tracking"):
        return TrackingSettings()
    kind = r.str("tracking.kind", KINDS)
    read = {k: r.opt_str(f"tracking.{k}") for k in ("uri", "experiment", "log_dir") if r.has(f"tracking.{k}")}
    loss = r.bool("tracking.log_train_loss") if r.has("tracking.log_train_loss") else False
    return TrackingSettings(kind=kind, log_train_loss=loss, **read)


def _monitor(r: _Reader) -> MonitorSettings:
    if not r.has("monitor"):
        return MonitorSettings()
    return MonitorSettings(
        reference=r.bool("monitor.reference"),
        epsilon=r.num("monitor.epsilon", positive=True),
        bins=r.int("monitor.bins", minimum=1, maximum=1000),
    )


def _audit(r: _Reader) -> AuditSettings:
    seed = r.seed("audit.seed", optional=True)
    return AuditSettings(
        enabled=r.bool("audit.enabled"),
        shadow_models=r.int("audit.shadow_models", minimum=0),
        shadow_data=r.opt_str("audit.shadow_data"),
        pool_path=r.opt_str("audit.pool_path"),
        confidence=r.num("audit.confidence"),
        seed=seed,
        update_card=r.bool("audit.update_card"),
        one_run=_one_run(r),
    ).validate()


def _one_run(r: _Reader) -> OneRunSettings:
    if not r.has("audit.one_run"):
        return OneRunSettings()
    return OneRunSettings(
        enabled=r.bool("audit.one_run.enabled"),
        mode=r.str("audit.one_run.mode"),
        canaries=r.int("audit.one_run.canaries", minimum=20),
        confidence=r.num("audit.one_run.confidence"),
        replay_steps=r.int("audit.one_run.replay_steps", optional=True, minimum=1),
        data=r.str("audit.one_run.data"),
    ).validate()


def _fl(r: _Reader):
    import os

    from privtrain.federated.partition import PartitionSpec
    from privtrain.federated.settings import CLIENT_SAMPLING, ENGINES, STRATEGIES, FlSettings

    num_cpus = r.num("fl.simulation.num_cpus", optional=True, positive=True)
    return FlSettings(
        engine=r.str("fl.engine", ENGINES),
        partition=PartitionSpec(
            r.str("fl.partition"),
            r.int("fl.num_clients"),
            r.num("fl.alpha", optional=True),
            r.opt_str("fl.client_column"),
            r.seed("fl.partition_seed"),
        ),
        client_test_size=r.num("fl.client_test_size"),
        test_size=r.num("dataset.test_size"),
        rounds=r.int("fl.rounds", minimum=1),
        clients_per_round=r.int("fl.clients_per_round", optional=True),
        fraction=r.num("fl.fraction"),
        round_timeout=r.num("fl.round_timeout", positive=True),
        federated_evaluation=r.bool("fl.federated_evaluation"),
        strategy=r.str("fl.strategy", STRATEGIES),
        proximal_mu=r.num("fl.proximal_mu", minimum=0.0),
        server_lr=r.num("fl.server_lr", positive=True),
        server_beta_1=r.num("fl.server_beta_1"),
        server_beta_2=r.num("fl.server_beta_2"),
        server_tau=r.num("fl.server_tau", positive=True),
        local_epochs=r.int("fl.local_epochs", minimum=1),
        batch_size=r.int("fl.batch_size", minimum=1),
        optimizer=r.str("fl.optimizer", ("sgd", "adam")),
        lr=r.num("fl.lr", positive=True),
        local_dp_lr=r.num("fl.local_dp_lr", positive=True),
        momentum=r.num("fl.momentum", minimum=0.0),
        grad_sample_mode=r.str("fl.grad_sample_mode"),
        privacy=r.str("privacy.name"),
        seed=r.seed("seed"),
        progress=r.bool("recipe.progress") & (r.str("recipe.name") == "federated"),
        num_cpus=float(num_cpus if num_cpus is not None else (os.cpu_count() or 1)),
        cpus_per_client=r.num("fl.simulation.cpus_per_client", positive=True),
        superlink=r.opt_str("fl.deployment.superlink"),
        startup_timeout=r.num("fl.deployment.startup_timeout", positive=True),
        client_sampling=r.str("fl.client_sampling", CLIENT_SAMPLING),
        sampling_rate=r.num("fl.sampling_rate", optional=True),
        reuse_ray=r.bool("fl.simulation.reuse_ray"),
        reproducible_noise=r.bool("reproducible_noise") if r.has("reproducible_noise") else False,
        public_n=_public_n(r),
        regions=_regions(r),
    ).validate()


def _regions(r: _Reader) -> tuple[str, ...]:
    """``fl.regions``: one region for every client, or one per client (docs/governance/provenance.md)."""
    from privtrain.ledger.consent import check_words

    value = r.raw("fl.regions") if r.has("fl.regions") else None
    if value is None:
        return ()
    listed = [value] if isinstance(value, str) else value if isinstance(value, list) else [str(value)]
    values = tuple(check_words([v], "fl.regions")[0] for v in listed)  # per client: repeats are meant
    n = r.int("fl.num_clients")
    if len(values) not in (1, n):
        raise UserError(
            f"fl.regions has {len(values)} regions for {n} clients; give one region for all "
            f"(fl.regions=eu-west) or one per client (fl.regions=[eu-west,...])."
        )
    return values


def _public_n(r: _Reader) -> int | None:
    """The dataset's public size for local DP-SGD: ``dataset.public_n``, else a custom dataset's ``dataset.size``."""
    for key in ("dataset.public_n", "dataset.size"):
        if r.has(key) and r.raw(key) is not None:
            return r.int(key, minimum=1)
    return None


def _synth(r: _Reader) -> SynthSettings:
    from privtrain.synthetic import MODELS

    model = r.str("synth.name", MODELS)
    private = r.bool("synth.private")
    common_keys = (
        "num_rows",
        "format",
        "metadata",
        "pii_check",
        "enforce_min_max_values",
        "enforce_rounding",
        "locales",
        "report",
        "utility",
        "name",
        "private",
    )
    params = {k: r.raw(f"synth.{k}") for k in r.raw("synth") if k not in common_keys}
    r.free.update(f"synth.{k}" for k, v in params.items() if isinstance(v, dict))
    num_rows = r.int("synth.num_rows", optional=True)
    if num_rows is not None and num_rows <= 0:
        raise UserError(f"synth.num_rows={num_rows} must be a positive number of rows (or null).")
    return SynthSettings(
        model=model,
        private=private,
        params=params,
        common={k: r.raw(f"synth.{k}") for k in ("enforce_min_max_values", "enforce_rounding", "locales")},
        num_rows=num_rows,
        fmt=r.str("synth.format"),
        metadata=r.opt_str("synth.metadata"),
        pii_check=r.bool("synth.pii_check"),
        report=r.bool("synth.report"),
        utility=r.bool("synth.utility.enabled"),
        classifier=r.str("synth.utility.classifier"),
    )
