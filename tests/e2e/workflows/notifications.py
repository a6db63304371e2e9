"""Launch plans that notify: email, Slack and PagerDuty on success, email on failure."""
from flytekit import Email, LaunchPlan, PagerDuty, Slack, WorkflowExecutionPhase, task, workflow


@task
def double(x: int) -> int:
    if x < 0:
        raise ValueError("negative input")
    return 2 * x


@workflow
def doubled(x: int) -> int:
    return double(x=x)


DONE = [WorkflowExecutionPhase.SUCCEEDED, WorkflowExecutionPhase.FAILED]

notified = LaunchPlan.get_or_create(
    workflow=doubled,
    name="notified",
    notifications=[
        Email(phases=DONE, recipients_email=["team@example.com", "lead@example.com"]),
        Slack(phases=[WorkflowExecutionPhase.SUCCEEDED], recipients_email=["alerts@example.slack.com"]),
        PagerDuty(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["oncall@example.com"]),
    ],
)
