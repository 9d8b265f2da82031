"""Step 2: the index a foreign key needs, built concurrently.

Django gives every ForeignKey an index on its column. In the risky project a plain CREATE INDEX builds it inside
the migration's transaction, under a SHARE lock: writes wait for the whole build. CREATE INDEX CONCURRENTLY
takes SHARE UPDATE EXCLUSIVE instead, which neither reads nor writes conflict with. It is built first because
the foreign key needs it as soon as it exists: deleting a customer looks up its orders by customer_id.

The index gets the name Django gives a ForeignKey's index, so the end state is exactly the risky project's. The
model state does not change here: the index belongs to the ForeignKey that 0004 declares.

Re-runnable (SkipIfDone): an index already built is skipped, an INVALID one (left by an interrupted build) is
dropped and built again, the repair the migration states (drop_invalid_index=True; migrationlab/resumable.py).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from migrationlab.operations import SkipIfDone


def build_index(model_name, name):
    return migrations.SeparateDatabaseAndState(
        database_operations=[AddIndexConcurrently(model_name, models.Index(fields=["customer"], name=name))],
        state_operations=[],
    )


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("demoapp", "0002_rename_customer_id_to_customer"),
    ]

    operations = [
        SkipIfDone(build_index(model_name, name), drop_invalid_index=True)
        for model_name, name in (("largeorder", "large_order_customer_id_96b7b144"),
                                 ("smallorder", "small_order_customer_id_8c7854fc"))
    ]
