"""The shipped models (dinos, shakespeare). Installed as the package `app.shipped`, so an installed copy
finds them with importlib.resources; in a checkout this directory is also the default user store."""
