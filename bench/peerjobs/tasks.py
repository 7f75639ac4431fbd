"""The one job body (bench/body.py), registered with each peer (Procrastinate autodiscovers ``tasks``)."""

from django_tasks import task
from procrastinate.contrib.django import app

from bench.body import proof_body


@task()
def dtdb_proof_job(key: str) -> str:
    return proof_body(key=key, folder="django_tasks_db")


@app.task(name="proof_job")
def procrastinate_proof_job(key: str) -> str:
    return proof_body(key=key, folder="procrastinate")
