"""Residency of federated clients: no client outside the source's allowed regions receives a model or reads a row.

A client's region is what its SuperNode declares in its node config (``--node-config "region='eu-west'"``),
else what ``fl.regions`` says for it (simulation, and the SuperNodes privtrain starts itself, which get it in
their node config). The allowed regions come from the ledger: the charged source's recorded provenance,
narrowed by the policy (``FlSettings.allowed_regions``, set by the recipe after admission).

Two guards, both before any message that carries a model or data:

1. the ServerApp's first exchange is a metadata-only QUERY (no arrays, no rows): every connected node answers
   with its partition and declared region; one node outside the allowed regions, or one that does not answer,
   stops the run before the first TRAIN message (:func:`check_nodes`);
2. the ClientApp itself refuses a TRAIN or EVALUATE message when its own region is not allowed, before it
   loads its rows (:func:`guard`): a server that skipped step 1 still gets no update from it.

``fl.regions`` is also checked with the run's facts before anything is read or charged (privtrain.policy.consent);
these guards cover what only the nodes know: regions declared by whoever started a remote SuperNode.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from privtrain.errors import UserError

QUERY = "region"
REFUSAL = "residency_refused.txt"  # a deployment's ServerApp runs in another process: its refusal comes back here


def for_run(settings, governance: dict | None):
    """The run's FlSettings with the allowed regions the ledger found (``governance``: the run summary's).

    Clients privtrain runs itself (simulation, or SuperNodes it starts, i.e. no ``fl.deployment.superlink``) and
    that ``fl.regions`` does not place execute where the run does: ``site.region``.
    """
    import dataclasses

    governance = governance or {}
    allowed = governance.get("allowed_regions")
    if allowed is None:
        return settings
    regions = settings.regions
    if not regions and settings.superlink is None and governance.get("region"):
        regions = (governance["region"],)
    return dataclasses.replace(settings, allowed_regions=tuple(allowed), regions=tuple(regions))


def node_region(context: Context, settings, k: int) -> str | None:
    """The region node ``k`` declares: its node config's ``region``, else ``fl.regions``; None: none declared."""
    declared = context.node_config.get("region")
    return str(declared) if declared not in (None, "") else settings.region_of(k)


def outside(settings, region: str | None) -> bool:
    """Is ``region`` outside the allowed regions (no declared region counts as outside when they are restricted)?"""
    return settings.allowed_regions is not None and region not in settings.allowed_regions


def guard(context: Context, settings, k: int) -> None:
    """The ClientApp's own check, before it loads a row.

    Raises:
        PermissionError: this node's region is not allowed (Flower returns it to the server as an error reply).
    """
    region = node_region(context, settings, k)
    if outside(settings, region):
        raise PermissionError(
            f"client {k} in {region or 'no declared region'} refuses to train: the source may be "
            f"processed only in {', '.join(settings.allowed_regions) or 'no region'}"
        )


def handle_query(msg: Message, context: Context, job) -> Message:
    """Answer the server's residency query with metadata only: partition id and declared region."""
    k = int(context.node_config["partition-id"])
    region = node_region(context, job.settings, k)
    return Message(
        content=RecordDict({"config": ConfigRecord({"partition-id": k, "region": region or ""})}), reply_to=msg
    )


def check_nodes(grid, nodes: list[int], settings, timeout: float, record: Path | None = None) -> dict[int, str]:
    """Ask every node its region (a metadata-only QUERY) and stop the run if one is outside the allowed regions.

    Args:
        record: where to write the refusal's line too (the run's output folder, read back by the deployment engine).

    Returns:
        node id -> declared region ("" when none); empty when no region is restricted (nothing is asked).

    Raises:
        UserError: a node is outside the allowed regions, or did not answer; no TRAIN message was sent.
    """
    if settings.allowed_regions is None or not nodes:
        return {}
    query = [
        Message(
            content=RecordDict({"config": ConfigRecord({"query": QUERY})}),
            dst_node_id=n,
            message_type=MessageType.QUERY,
        )
        for n in nodes
    ]
    answers: dict[int, str | None] = dict.fromkeys(nodes)
    for reply in grid.send_and_receive(query, timeout=timeout):
        if not reply.has_error() and "config" in reply.content:
            answers[int(reply.metadata.src_node_id)] = str(reply.content["config"]["region"])
    allowed = ", ".join(settings.allowed_regions) or "no region"
    for node, region in sorted(answers.items()):
        why = None
        if region is None:
            why = (
                f"federated node {node} did not declare its region within {timeout:g} s; the source may be "
                f"processed only in {allowed}: no model or data was sent to any node. Start its SuperNode "
                "with --node-config \"region='REGION'\" (and a current privtrain app)."
            )
        elif outside(settings, region or None):
            why = (
                f"federated node {node} is in {region or 'no declared region'}, outside the source's allowed "
                f"regions ({allowed}): no model or data was sent to any node. Run it in an allowed region "
                "(--node-config \"region='REGION'\", fl.regions=[...]), or record a decision that changes the "
                "source's regions (privtrain ledger provenance set)."
            )
        if why is not None:
            if record is not None:
                record.write_text(why + "\n")
            raise UserError(why)
    return {n: r or "" for n, r in answers.items()}


def raise_recorded(output_dir: Path) -> None:
    """In the process that started a deployment: raise the ServerApp's residency refusal, if it recorded one.

    Raises:
        UserError: the refusal's line (the file is removed: it is not one of the run's files).
    """
    path = Path(output_dir) / REFUSAL
    if path.is_file():
        why = path.read_text().strip()
        path.unlink()
        raise UserError(why)
