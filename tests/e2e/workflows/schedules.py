"""Scheduled launch plans: a workflow that returns the kickoff time it was given."""
import datetime

from flytekit import LaunchPlan, task, workflow
from flytekit.models import schedule as schedule_model


@task
def stamp(kickoff: datetime.datetime) -> str:
    return kickoff.isoformat()


@workflow
def stamped(kickoff: datetime.datetime) -> str:
    return stamp(kickoff=kickoff)


def every_two_seconds() -> schedule_model.Schedule:
    # Flyte's `@every` cron descriptor: flytekit's CronSchedule validates with croniter,
    # which does not know it, and FixedRate stops at minutes, so the schedule model is used
    # as it is (it is what CronSchedule builds).
    return schedule_model.Schedule(
        kickoff_time_input_arg="kickoff",
        cron_schedule=schedule_model.Schedule.CronSchedule("@every 2s", None),
    )


every_two = LaunchPlan.get_or_create(workflow=stamped, name="every_two", schedule=every_two_seconds())
catch_up = LaunchPlan.get_or_create(workflow=stamped, name="catch_up", schedule=every_two_seconds())
