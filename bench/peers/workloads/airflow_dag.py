"""The two shapes as Airflow 3 DAGs (TaskFlow), for `airflow dags test` and a scheduler."""
import pendulum
from airflow.sdk import dag, task


@task
def inc(x: int) -> int:
    return x + 1


@task
def join(xs) -> int:
    return sum(xs)


@dag(dag_id="peers_chain", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def peers_chain():
    x = 0
    for i in range(20):
        x = inc.override(task_id=f"inc_{i}")(x)


@dag(dag_id="peers_fanout", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def peers_fanout():
    join([inc.override(task_id=f"inc_{i}")(i) for i in range(200)])


peers_chain()
peers_fanout()
