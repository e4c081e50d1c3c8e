"""Voilà as the dashboards' server: its configuration (``voila.json``) and the launcher
(:mod:`workbench.publish.voila.server`) that ``workbench serve`` runs."""

# Kernels serving viewers at once, overall and per client (workbench.publish.voila.guards):
# a kernel holds a few hundred MiB, so the total sets the server's memory ceiling.
DEFAULT_TOTAL = 16
DEFAULT_PER_CLIENT = 6
