"""ml_collections config files for ``experiments/train.py`` (one ``get_config()`` each)."""
