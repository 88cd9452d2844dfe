"""Template registry: publish, store, read and watch signed agent templates."""
