"""The contract a plugin meets: :class:`~repeval.plugin.family.Family` and ``register_model`` for
trained encoders, ``register_encoder`` / ``register_backbone`` for frozen ones, ``register_protocol``
for evaluation protocols, and ``--plugin FILE.py`` loading."""
