"""``vmkit.sim``: a model kernel that behaves like Linux 6.18 x86-64 through the memory calls.

Layered like gVisor's mm: the syscall modules (``sys_*``) check arguments in the kernel's errno
order, over the address-space engine (:mod:`vmkit.sim.mm`: VMA set, placement, merge/split, faults),
over the page layer (:mod:`vmkit.sim.frames`, the page caches of :mod:`vmkit.sim.fs`).
"""

from vmkit.sim.kernel import Kernel
from vmkit.sim.process import SimProcess

__all__ = ["Kernel", "SimProcess"]
