"""Supply-chain validation: decide whether a published model version may enter the registry.

Public entry points: :func:`services.supply_chain.service_layer.validate.validate_model_version`
and :func:`services.supply_chain.entrypoints.cli.register`.
"""
