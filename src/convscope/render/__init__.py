"""Rendering: figures (PNG) for every view.

Importing the package imports the modules whose functions results draw with
(``convscope.display.draw``): each registers them with ``@drawing``.
"""

from convscope.render import attribution, challenges, figures, scene, views  # noqa: F401  (registration)
