"""`python -m engine.migrations ...`: Alembic's command line on the locker schema."""

from engine.migrations import main

main()
