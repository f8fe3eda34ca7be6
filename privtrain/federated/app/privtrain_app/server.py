"""ServerApp component: runs the planned job's rounds; results go to the job's output directory."""

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    from privtrain.federated.job import Job
    from privtrain.federated.server_app import run_server

    run_server(grid, Job.from_text(str(context.run_config["job"])), progress=False)
