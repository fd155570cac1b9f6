"""Volume nodes <-> :class:`~LowLightDenoiseLib.volume.Volume`, with the exact IJK-to-RAS geometry.

MRML stores spacing, origin and IJK-to-RAS directions; the library's :class:`Volume` uses ITK's LPS.
The conversion only negates the first two rows (RAS = diag(-1, -1, 1) LPS), which is exact in
floating point, so an output node has bit-for-bit the IJK-to-RAS matrix of its input.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ..errors import InputError
from ..volume import Volume

#: RAS = FLIP @ LPS (and LPS = FLIP @ RAS).
_FLIP = np.diag([-1.0, -1.0, 1.0])

SCALAR_NODE = "vtkMRMLScalarVolumeNode"
VECTOR_NODE = "vtkMRMLVectorVolumeNode"
#: Volume node classes whose voxels are intensities this library can process.
SUPPORTED_NODE_CLASSES = (SCALAR_NODE, VECTOR_NODE)
#: volume metadata copied to the output node as ``LowLightDenoise.<key>`` attributes
_ATTRIBUTES = ("method", "mode", "device", "degradation")


def ijk_to_ras(volume: Volume) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of ``volume`` (Slicer's convention) from its LPS geometry."""
    direction = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = _FLIP @ direction @ np.diag(volume.spacing)
    m[:3, 3] = _FLIP @ np.asarray(volume.origin, dtype=np.float64)
    return m


def node_ijk_to_ras(node: Any) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a volume node as a numpy array."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def check_volume_node(node: Any, what: str) -> None:
    """A scalar or RGB volume node with image data, or one sentence (label maps are refused)."""
    if node is None:
        raise InputError(f"No {what} volume was selected.")
    cls = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
    if cls == "vtkMRMLLabelMapVolumeNode":
        raise InputError(f"{node.GetName()!r} is a label map (segment labels, not intensities); "
                         f"pick a scalar or RGB volume as {what}.")
    if cls not in SUPPORTED_NODE_CLASSES:
        raise InputError(f"{what.capitalize()} volume must be a scalar or RGB (vector) volume, "
                         f"not a {cls}.")
    if node.GetImageData() is None:
        raise InputError(f"Volume {node.GetName()!r} has no image data.")


def volume_from_node(node: Any, what: str = "input") -> Volume:
    """Copy a scalar or RGB volume node into a :class:`Volume` (LPS geometry, own array).

    The array is a copy, so later changes to the node do not reach the volume (and a worker can use
    it while the user edits the scene). A parent transform is not applied: the geometry is the node's
    own IJK-to-RAS, as for Slicer's own filters.
    """
    import slicer.util

    check_volume_node(node, what)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if node.GetClassName() == VECTOR_NODE and array.ndim == 3:  # a one-component vector volume
        array = array[..., np.newaxis]
    spacing, origin, direction = _node_geometry(node)
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction,
                  source_dtype=str(array.dtype),
                  metadata={"node_name": node.GetName(), "node_id": node.GetID() or ""})


def _array_for_node(volume: Volume) -> np.ndarray:
    """Voxel array to store: colour goes back to its stored integer type, scalars stay as computed.

    Slicer shows a vector volume as colour only for unsigned 8-bit components, so an RGB result is
    rounded and clipped to its source type; a scalar result keeps the sub-integer precision the
    denoiser produced (a CT in int16 HU comes back in float32 HU).
    """
    a = np.asarray(volume.array)
    dtype = np.dtype(volume.source_dtype or a.dtype)
    if volume.is_color and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(a), info.min, info.max).astype(dtype)
    return a


def _node_geometry(node: Any) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """``(spacing, origin, direction)`` of a volume node in the library's LPS convention."""
    import vtk

    dirs = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(dirs)
    ras_dirs = np.array([[dirs.GetElement(r, c) for c in range(3)] for r in range(3)])
    origin = _FLIP @ np.asarray(node.GetOrigin(), dtype=np.float64)
    return tuple(node.GetSpacing()), tuple(origin), tuple((_FLIP @ ras_dirs).ravel())


def node_from_volume(volume: Volume, scene: Any, name: str, like: Any = None,
                     window_level_from_like: bool = True) -> Any:
    """Add a new volume node holding ``volume`` to ``scene`` and return it.

    Scalar volumes become ``vtkMRMLScalarVolumeNode``, colour volumes ``vtkMRMLVectorVolumeNode``.
    The geometry is written as spacing, origin and directions (only signs change from LPS), so a
    volume read by :func:`volume_from_node` comes back with the bit-identical IJK-to-RAS matrix.
    With ``like`` (the input node) the output takes its window/level (``window_level_from_like``)
    so both show the same contrast side by side.
    """
    import slicer.util
    import vtk

    if scene is None:
        raise InputError("No MRML scene was given to add the result to.")
    node_class = VECTOR_NODE if volume.is_color else SCALAR_NODE
    node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(str(name)))
    slicer.util.updateVolumeFromArray(node, _array_for_node(volume))
    node.SetSpacing(*volume.spacing)
    node.SetOrigin(*(_FLIP @ np.asarray(volume.origin, dtype=np.float64)))
    ras_dirs = _FLIP @ np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, float(ras_dirs[r, c]))
    node.SetIJKToRASDirectionMatrix(m)
    node.CreateDefaultDisplayNodes()
    _copy_window_level(like, node, window_level_from_like)
    for key in _ATTRIBUTES:
        if key in volume.metadata:
            node.SetAttribute(f"LowLightDenoise.{key}", str(volume.metadata[key]))
    return node


def _copy_window_level(source: Any, target: Any, enabled: bool) -> None:
    if not enabled or source is None or target.GetClassName() != SCALAR_NODE:
        return
    src, dst = source.GetDisplayNode(), target.GetDisplayNode()
    if src is None or dst is None or not hasattr(src, "GetWindow"):
        return
    if src.GetAutoWindowLevel():
        return
    dst.SetAutoWindowLevel(0)
    dst.SetWindowLevel(src.GetWindow(), src.GetLevel())
