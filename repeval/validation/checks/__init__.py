"""The built-in checks of ``repeval validate``: every module here registers one check
(:func:`repeval.validation.registry.register_check`); the registry imports them all."""
