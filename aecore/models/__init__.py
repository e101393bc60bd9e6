"""Every autoencoder family; importing this package registers them all.

Adding a family: create one module here with a config class and a model class decorated with
``@register("name")``, then import it below.
"""

from aecore.models import (  # noqa: F401
    adversarial,
    contractive,
    conv,
    denoising,
    dense,
    linear,
    masked,
    recurrent,
    residual,
    sparse,
    vae,
    vq_vae,
)
