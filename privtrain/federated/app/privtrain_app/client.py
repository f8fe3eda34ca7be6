"""ClientApp component: each SuperNode trains on its own partition (``partition-id`` in its node config)."""

from functools import lru_cache

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

app = ClientApp()


@lru_cache(maxsize=2)
def _app(job_text: str) -> ClientApp:
    # One job per run; cached so a long-lived ClientApp process loads its rows once.
    from privtrain.federated.client_app import make_client_app
    from privtrain.federated.job import Job

    return make_client_app(Job.from_text(job_text, cache_rows=True))


@app.train()
def train(msg: Message, context: Context) -> Message:
    return _app(str(context.run_config["job"]))(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _app(str(context.run_config["job"]))(msg, context)


@app.query()
def query(msg: Message, context: Context) -> Message:  # residency: the node's declared region, metadata only
    return _app(str(context.run_config["job"]))(msg, context)
