"""Safe (a): the same kind of change as 0002, a new db_default, made so that it can never hold up traffic.

ALTER COLUMN ... SET DEFAULT only changes the catalog, but it needs ACCESS EXCLUSIVE on the table. Behind a long
report, 0002 waits for that lock with no limit, and every read and write queues behind it. Here each attempt
waits at most 200 ms (lock_timeout), gives up, lets the queued requests through and tries again later; the change
lands as soon as the report ends. The lock_timeout is the longest any request queues behind the ALTER, so it is
picked from the latency budget: 200 ms keeps every answer under a quarter of a second (the lab's default, 500 ms,
would let requests queue for half a second). Large table first, then the small one, each in its own short transaction.
"""

from django.db import migrations, models

from migrationlab.operations import WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0002_change_status_default"),
    ]

    operations = [
        WithLockTimeout(
            migrations.AlterField(
                model_name=model_name,
                name="currency",
                field=models.CharField(db_default="USD", max_length=3),
            ),
            lock_timeout="200ms",
        )
        for model_name in ("largeorder", "smallorder")
    ]
