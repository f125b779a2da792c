"""The network families of the conventional searchers, one module each: what a genotype body of
the family holds and its validation, the discrete generator (and discriminator where the family
has its own), the supernet of the search where there is one, and the published architectures.

- ``alphagan_cells``: alphaGAN on AutoGAN-style cells (search space ``alphagan_conv``);
- ``autogan_cells``: AutoGAN's cells and its 14-integer code (``autogan``);
- ``degas_dag``: DEGAS' whole-generator DAG of feature maps (``degas``);
- ``dggan_grown``: DGGAN's grown ProgGAN G and D and the growing actions (``dggan``);
- ``agan_modules``: AGAN's searched G and D modules (``agan``);
- ``cells``, ``discriminators``: the frame of the cell generators and the fixed SNGAN
  discriminators they train against.

Importing this package registers every family with ``conventional.genotypes`` (``SPACES``, the
order of its error messages) and fills ``PUBLISHED``; ``conventional.networks`` builds (G, D).
"""

from ..genotypes import PUBLISHED, register_space
from . import agan_modules, alphagan_cells, autogan_cells, degas_dag, dggan_grown

for name, space in (("alphagan_conv", alphagan_cells), ("autogan", autogan_cells), ("degas", degas_dag),
                    ("dggan", dggan_grown), ("agan", agan_modules)):
    register_space(name, space.KEYS, space.validate, getattr(space, "OPTIONAL_KEYS", ()))
PUBLISHED.update(autogan_cells.PUBLISHED)
PUBLISHED.update(alphagan_cells.PUBLISHED)
