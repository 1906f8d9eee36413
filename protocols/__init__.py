"""Evaluation protocols, one file each: every module here is imported by
:func:`repeval.plugin.discovery.load_builtins` and registers its protocol (``@register_protocol``)."""
