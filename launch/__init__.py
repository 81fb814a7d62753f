"""Entry points: ``launch/train.py`` runs any config of either package."""
