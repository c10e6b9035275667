"""QAccelX: make a timm image classifier faster on x86 CPUs and prove what it cost.

The library computes; it has no Prefect imports. The Prefect tasks in ``tasks/`` and the flows in
``flows/`` call into it.
"""

__version__ = "0.1.0"
