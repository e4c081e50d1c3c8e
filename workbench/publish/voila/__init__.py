"""Voilà as the dashboards' server: its configuration (``voila.json``) and the launcher
(:mod:`workbench.publish.voila.server`) that ``workbench serve`` runs."""
