"""For plugin authors: the contract check, the pytest helpers, the plugin scaffold and deprecations."""
