"""A release that moves a job function leaves pointers with the old dotted path in Redis.

RQ cannot import them, so it fails the pointer; Postgres still says the job
(or the SMS) is waiting, so the reconciler enqueues a fresh pointer with the
current path, and the work is done once, by the new code.
"""

from __future__ import annotations

from rq import Queue
from rq.job import Job, JobStatus

from searchjobs import defaults
from searchjobs.notifications import outbox
from searchjobs.worker.reconciler import reconcile
from tests.integration.test_core_loop import row_of, submit_upload

# the SMS send lived here before the layout of issue #15; the search never moved, so its
# old path is one the current release cannot import, as a later move would leave it
OLD_NOTIFICATION_FUNC = "searchjobs.jobs.notify.send"
OLD_SEARCH_FUNC = "searchjobs.jobs.moved_away.run"


def _replace_pointer(runtime, queue_name: str, rq_id: str, old_func: str, *args) -> None:
    """What Redis holds after an upgrade: the same RQ id, queued by the old release."""
    queue = Queue(queue_name, connection=runtime.redis)
    queue.remove(rq_id)
    Job.fetch(rq_id, connection=runtime.redis).delete()
    queue.enqueue(old_func, *args, job_id=rq_id)


def test_a_search_pointer_with_an_old_path_is_replaced_and_the_job_runs_once(client, runtime, run_jobs):
    job_id = submit_upload(client).get_json()["job_id"]
    _replace_pointer(runtime, defaults.SEARCH_QUEUE, job_id, OLD_SEARCH_FUNC, job_id)

    run_jobs([defaults.SEARCH_QUEUE])
    assert Job.fetch(job_id, connection=runtime.redis).get_status() == JobStatus.FAILED  # RQ could not import it
    assert row_of(runtime, job_id)["status"] == "pending"  # the truth is untouched

    assert reconcile(runtime).requeued == [job_id]  # the marker is gone after the flush: no grace
    run_jobs([defaults.SEARCH_QUEUE])
    row = row_of(runtime, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)


def test_an_sms_pointer_with_an_old_path_is_replaced_and_sent_once(client, runtime, run_jobs):
    job_id = submit_upload(client, phone_number="06 12 34 56 78", country_code="33").get_json()["job_id"]
    run_jobs([defaults.SEARCH_QUEUE])
    with runtime.db.connect() as conn:
        [row] = outbox.for_job(conn, job_id)
    rq_id = f"sms-{row['id']}"
    _replace_pointer(runtime, defaults.NOTIFICATION_QUEUE, rq_id, OLD_NOTIFICATION_FUNC, row["id"])

    run_jobs([defaults.NOTIFICATION_QUEUE])
    with runtime.db.connect() as conn:
        assert outbox.for_job(conn, job_id)[0]["status"] == "pending"

    assert reconcile(runtime).notifications == 1
    run_jobs([defaults.NOTIFICATION_QUEUE])
    with runtime.db.connect() as conn:
        [after] = outbox.for_job(conn, job_id)
    assert (after["status"], after["attempts"]) == ("sent", 1)
