"""`python -m engine.locker.migrations ...`: Alembic's command line on the locker schema."""

from engine.locker.migrations import main

main()
