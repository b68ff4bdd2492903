"""Integrations with tools outside abqa (experiment trackers). They read the run folder through `abqa.core.run`
and are called at the edge of a command, after its files are written; no stage imports them in its middle."""
