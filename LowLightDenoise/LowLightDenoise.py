"""LowLightDenoise: denoise and restore low-light medical images in 3D Slicer.

Only what needs Qt or the Slicer application lives here (widget, dialogs, dependency installation,
the module classes). Everything that acts on MRML nodes, the view layout and the self-test's checks
are in ``LowLightDenoiseLib.mrml`` and run without this file, in batch scripts and in CI.
"""
import importlib
import logging
import os
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode
from slicer.parameterNodeWrapper import Choice, Default, Minimum, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LowLightDenoiseLib import DEFAULT_METHOD, mrml
from LowLightDenoiseLib.errors import LowLightDenoiseError
from LowLightDenoiseLib.options import DEVICES, FLIP_COUNTS, MAX_STRENGTH, MODES, RunOptions

HOMEPAGE = "https://github.com/lowlightdenoise/SlicerLowLightDenoise"
#: Slice-axis choices as shown to the user, in array (k, j, i) order.
AXIS_LABELS = ("k - as stored (axial for axial scans)", "j - coronal for axial scans", "i - sagittal for axial scans")
VolumeNode = Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode, None]


class LowLightDenoise(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Low-Light Denoise"
        self.parent.categories = ["Filtering.Denoising"]
        self.parent.dependencies = []
        self.parent.contributors = ["LowLightDenoise contributors"]
        self.parent.helpText = (
            "Denoise and restore low-light CT, MR, X-ray, ultrasound and photographic images with learned "
            "(PyTorch/MONAI) and classical methods, compare them, simulate low-light acquisitions, and "
            f'measure the result. See the <a href="{HOMEPAGE}">documentation</a>.')
        self.parent.acknowledgementText = (
            "Built on 3D Slicer, PyTorch, MONAI, SimpleITK and scikit-image. The sample crops come from "
            "openly licensed sources listed in the repository.")


@parameterNodeWrapper
class LowLightDenoiseParameterNode:
    """The module's settings, saved with the scene (bound to the widgets by SlicerParameterName)."""

    inputVolume: VolumeNode
    referenceVolume: VolumeNode
    method: Annotated[str, Default("")]
    mode: Annotated[str, Choice(list(MODES)), Default("auto")]
    axis: Annotated[str, Choice(list(AXIS_LABELS)), Default(AXIS_LABELS[0])]
    device: Annotated[str, Choice(list(DEVICES)), Default("auto")]
    autoStrength: Annotated[bool, Default(True)]
    strength: Annotated[float, WithinRange(0.0, MAX_STRENGTH), Default(1.0)]
    flips: Annotated[str, Choice([str(n) for n in FLIP_COUNTS]), Default("1")]
    compareMethods: Annotated[str, Default("")]
    keepCompareOutputs: Annotated[bool, Default(False)]
    noiseType: Annotated[str, Choice(mrml.noise_types()), Default("lowlight")]
    brightness: Annotated[float, WithinRange(0.01, 1.0), Default(0.5)]
    gamma: Annotated[float, WithinRange(0.2, 5.0), Default(1.0)]
    peak: Annotated[float, WithinRange(1.0, 1e6), Default(100.0)]
    readNoise: Annotated[float, WithinRange(0.0, 1000.0), Default(1.0)]
    noiseLevel: Annotated[float, WithinRange(0.0, 1.0), Default(0.05)]
    seed: Annotated[int, Minimum(0), Default(0)]


def denoiseSettings(p, method: Optional[str] = None) -> mrml.DenoiseSettings:
    options = RunOptions(mode=p.mode, axis=AXIS_LABELS.index(p.axis), device=p.device,
                         strength=None if p.autoStrength else p.strength, flips=int(p.flips))
    return mrml.DenoiseSettings(method or p.method, options)


def simulationSettings(p) -> mrml.SimulationSettings:
    return mrml.SimulationSettings(noise=p.noiseType, brightness=p.brightness, gamma=p.gamma, peak=p.peak,
                                   read_noise=p.readNoise, level=p.noiseLevel, seed=p.seed)


class LowLightDenoiseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None
        self._onTaskDone = None
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._pollTask)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LowLightDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LowLightDenoiseLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.compareButton.connect("clicked(bool)", self.onCompare)
        self.ui.simulateButton.connect("clicked(bool)", self.onSimulate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.downloadModelButton.connect("clicked(bool)", self.onDownloadModel)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshMethods)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self._onMethodChanged)
        self.ui.compareListWidget.connect("itemChanged(QListWidgetItem*)", self._onCompareChanged)
        self.refreshMethods()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and first.GetClassName() in mrml.SUPPORTED_NODE_CLASSES:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._showMethodSelection()
        self._updateButtons()

    # ---------------------------------------------------------------- method lists (not bound: dynamic)

    def refreshMethods(self) -> None:
        """Fill the method drop-down, the compare list and the models table from the library."""
        try:
            choices = mrml.method_choices()
            models = self.logic.models()
        except ImportError as error:
            choices, models = [], []
            self._setStatus(f"Python packages are missing ({error.name}); press Apply to install them.")
        self.ui.methodComboBox.blockSignals(True)
        self.ui.methodComboBox.clear()
        for name, label in choices:
            self.ui.methodComboBox.addItem(label, name)
        self.ui.methodComboBox.blockSignals(False)
        self.ui.compareListWidget.blockSignals(True)
        self.ui.compareListWidget.clear()
        for name, label in choices:
            item = qt.QListWidgetItem(label)
            item.setData(qt.Qt.UserRole, name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked)
            self.ui.compareListWidget.addItem(item)
        self.ui.compareListWidget.blockSignals(False)
        self._fillModelsTable(models)
        self._showMethodSelection()

    def _showMethodSelection(self) -> None:
        if not self._parameterNode:
            return
        index = self.ui.methodComboBox.findData(self._parameterNode.method)
        if index < 0 and self.ui.methodComboBox.count:
            index = max(self.ui.methodComboBox.findData(DEFAULT_METHOD), 0)
            self._parameterNode.method = self.ui.methodComboBox.itemData(index)
        self.ui.methodComboBox.blockSignals(True)
        self.ui.methodComboBox.setCurrentIndex(index)
        self.ui.methodComboBox.blockSignals(False)
        ticked = set(filter(None, self._parameterNode.compareMethods.split(",")))
        self.ui.compareListWidget.blockSignals(True)
        for row in range(self.ui.compareListWidget.count):
            item = self.ui.compareListWidget.item(row)
            item.setCheckState(qt.Qt.Checked if item.data(qt.Qt.UserRole) in ticked else qt.Qt.Unchecked)
        self.ui.compareListWidget.blockSignals(False)

    def _onMethodChanged(self, index) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.method = self.ui.methodComboBox.itemData(index)

    def _onCompareChanged(self, item) -> None:
        if self._parameterNode:
            self._parameterNode.compareMethods = ",".join(self._tickedMethods())

    def _tickedMethods(self):
        items = [self.ui.compareListWidget.item(r) for r in range(self.ui.compareListWidget.count)]
        return [i.data(qt.Qt.UserRole) for i in items if i.checkState() == qt.Qt.Checked]

    def _fillModelsTable(self, models) -> None:
        table = self.ui.modelsTableWidget
        headers = ["Model", "Version", "Dims", "Installed", "Size (MB)", "Licence"]
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(models))
        table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        for row, m in enumerate(models):
            values = [m["name"], m.get("version", ""), "/".join(f"{d}D" for d in m.get("spatial_dims", [])),
                      "yes" if m.get("installed") else "no", f"{m.get('size', 0) / 1e6:.1f}", m.get("licence", "")]
            for col, value in enumerate(values):
                table.setItem(row, col, qt.QTableWidgetItem(str(value)))

    # ---------------------------------------------------------------- buttons

    def _updateButtons(self, caller=None, event=None) -> None:
        busy = self._task is not None
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = hasInput and not busy and self.ui.methodComboBox.count > 0
        self.ui.compareButton.enabled = hasInput and not busy and bool(self._tickedMethods())
        self.ui.simulateButton.enabled = hasInput and not busy
        self.ui.downloadModelButton.enabled = not busy
        self.ui.importModelButton.enabled = not busy
        self.ui.cancelButton.enabled = busy
        self.ui.strengthSliderWidget.enabled = bool(self._parameterNode and not self._parameterNode.autoStrength)

    def onApply(self) -> None:
        with slicer.util.tryWithErrorDisplay("Denoising failed.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            job = mrml.prepare_denoise(p.inputVolume, denoiseSettings(p), p.referenceVolume)
            self._start(lambda progress, cancel: mrml.run_job(job, progress, cancel),
                        lambda comparison: self._showDenoised(job, comparison))

    def onCompare(self) -> None:
        with slicer.util.tryWithErrorDisplay("Comparison failed.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            methods = self._tickedMethods()
            job = mrml.prepare_denoise(p.inputVolume, denoiseSettings(p, methods[0]), p.referenceVolume, methods)
            self._start(lambda progress, cancel: mrml.run_job(job, progress, cancel),
                        lambda comparison: self._showCompared(job, comparison))

    def onSimulate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Simulation failed.", waitCursor=True):
            p = self._parameterNode
            inputNode, settings = p.inputVolume, simulationSettings(p)
            volume = mrml.volume_from_node(inputNode)
            degradation = settings.degradation()

            def work(progress, cancel):
                from LowLightDenoiseLib.degrade import simulate_volume

                progress(0.1, f"Simulating {degradation.describe()}")
                return simulate_volume(volume, degradation, seed=settings.seed)

            self._start(work, lambda noisy: self._showVolumes(inputNode, mrml.node_from_volume(
                noisy, slicer.mrmlScene, f"{inputNode.GetName()} {settings.noise}", like=inputNode)))

    def onDownloadModel(self) -> None:
        rows = self.ui.modelsTableWidget.selectionModel().selectedRows()
        if not rows:
            slicer.util.warningDisplay("Select a model in the table first.")
            return
        name = self.ui.modelsTableWidget.item(rows[0].row(), 0).text()
        with slicer.util.tryWithErrorDisplay(f"Download of model {name} failed.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            from LowLightDenoiseLib import registry

            self._start(lambda progress, cancel: registry.download_model(name, progress, cancel=cancel),
                        lambda path: self.refreshMethods())

    def onImportModel(self) -> None:
        rows = self.ui.modelsTableWidget.selectionModel().selectedRows()
        if not rows:
            slicer.util.warningDisplay("Select the model the file belongs to in the table first.")
            return
        name = self.ui.modelsTableWidget.item(rows[0].row(), 0).text()
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), f"Weights of model {name}", "",
                                              "Weights (*.safetensors *.pt *.pth);;All files (*)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(f"Import of model {name} failed.", waitCursor=True):
            from LowLightDenoiseLib import registry

            registry.import_model(name, path)
            self.refreshMethods()

    def onCancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._setStatus("Cancelling...")

    # ---------------------------------------------------------------- background work

    def _start(self, work, onDone) -> None:
        """Run ``work(progress, cancel)`` in a thread; ``onDone(result)`` runs on the main thread."""
        self._task = mrml.BackgroundTask(work).start()
        self._onTaskDone = onDone
        self.ui.progressBar.value = 0
        self._setStatus("Working...")
        self._updateButtons()
        self._timer.start()

    def _pollTask(self) -> None:
        fraction, message = self._task.status()
        self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self._setStatus(message)
        if not self._task.done:
            return
        self._timer.stop()
        task, onDone = self._task, self._onTaskDone
        self._task, self._onTaskDone = None, None
        self._updateButtons()
        if task.cancelled:
            self.ui.progressBar.value = 0
            self._setStatus("Cancelled; nothing was added to the scene.")
        elif task.error is not None:
            logging.error(task.error_details)
            self._setStatus(task.user_message())
            slicer.util.errorDisplay(task.user_message(), detailedText=task.error_details)
        else:
            with slicer.util.tryWithErrorDisplay("Could not show the result.", waitCursor=True):
                onDone(task.result)
                self.ui.progressBar.value = 100

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 3000)

    # ---------------------------------------------------------------- results on the main thread

    def _showDenoised(self, job, comparison) -> None:
        nodes, table = mrml.publish_denoise(slicer.mrmlScene, job, comparison)
        self._showVolumes(slicer.mrmlScene.GetNodeByID(job.input_node_id), nodes[0], table)
        outcome = comparison.outcomes[0]
        row = outcome.row
        self._setStatus(f"{row['method']}: {row['seconds']:.1f} s on {row['device']} ({row['mode']}). "
                        + " ".join(outcome.warnings))
        if outcome.warnings:
            slicer.util.warningDisplay(" ".join(outcome.warnings), windowTitle="Low-Light Denoise")

    def _showCompared(self, job, comparison) -> None:
        nodes, table = mrml.publish_denoise(slicer.mrmlScene, job, comparison,
                                            keep_outputs=self._parameterNode.keepCompareOutputs,
                                            table_name=f"{job.input_name} comparison")
        chart = mrml.metrics_plot_node(slicer.mrmlScene, table, mrml.default_plot_column(table))
        inputNode = slicer.mrmlScene.GetNodeByID(job.input_node_id)
        self._showVolumes(inputNode, nodes[0] if nodes else inputNode, table, chart)
        self._setStatus(f"Compared {len(comparison.outcomes)} methods; see the table and chart.")

    def _showVolumes(self, inputNode, outputNode, table=None, chart=None) -> None:
        """Input left, result right (linked views), table and chart below."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no main window (batch or test run)
            return
        layoutManager.setLayout(mrml.register_layout(layoutManager.layoutLogic().GetLayoutNode()))
        for viewName, node in (("Red", inputNode), ("Yellow", outputNode)):
            sliceLogic = layoutManager.sliceWidget(viewName).sliceLogic()
            composite = sliceLogic.GetSliceCompositeNode()
            composite.SetBackgroundVolumeID(node.GetID() if node else None)
            composite.SetForegroundVolumeID(None)
            composite.SetLinkedControl(True)
            sliceLogic.FitSliceToAll()
        appLogic = slicer.app.applicationLogic()
        if table is not None:
            appLogic.GetSelectionNode().SetActiveTableID(table.GetID())
            appLogic.PropagateTableSelection()
        if chart is not None:
            appLogic.GetSelectionNode().SetActivePlotChartID(chart.GetID())
            appLogic.PropagatePlotChartSelection()


class LowLightDenoiseLogic(ScriptedLoadableModuleLogic):
    """Thin wrapper over ``LowLightDenoiseLib.mrml`` plus what needs the application (installs)."""

    def getParameterNode(self):
        return LowLightDenoiseParameterNode(super().getParameterNode())

    def models(self):
        from LowLightDenoiseLib import registry

        return registry.describe_models()

    def denoise(self, inputNode, method, referenceNode=None, **options):
        """``(outputNode, tableNode)``; options: ``options`` (a RunOptions) or its fields (mode, axis, device,
        strength, seed, flips), progress, cancel."""
        return mrml.denoise_node(slicer.mrmlScene, inputNode, method, reference_node=referenceNode, **options)

    def compare(self, inputNode, methods, referenceNode=None, **options):
        """``(tableNode, outputNodes, chartNode)`` of several methods on one input."""
        return mrml.compare_nodes(slicer.mrmlScene, inputNode, methods, reference_node=referenceNode, **options)

    def simulate(self, inputNode, settings=None):
        return mrml.simulate_node(slicer.mrmlScene, inputNode, settings)

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install PyTorch (through the PyTorch extension) and the other packages, after asking.

        Slicer's own numpy, SimpleITK, requests and PyTorch are pinned to their installed versions
        so that pip never replaces them. Returns False when the user declines.
        """
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise LowLightDenoiseError(
                "This module needs the PyTorch extension: install 'PyTorch' from the Extensions Manager "
                "and restart Slicer.") from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=">=1.13") is None:
                return False
        missing = mrml.missing_requirements()
        if not missing:
            return True
        try:
            self._pipInstall(missing, askConfirmation)
        except RuntimeError as error:
            if "abort" in str(error).lower() or "declin" in str(error).lower():
                return False
            raise LowLightDenoiseError(
                f"Installing {', '.join(missing)} failed ({error}). Without internet, install them from a "
                "folder of wheels: PythonSlicer -m pip install --no-index --find-links FOLDER "
                f"{' '.join(missing)}") from error
        importlib.invalidate_caches()
        return not mrml.missing_requirements()

    def _pipInstall(self, missing, askConfirmation: bool) -> None:
        pipEnsure = None
        for moduleName in ("slicer.packaging", "slicer.pydeps"):
            try:
                pipEnsure = getattr(importlib.import_module(moduleName), "pip_ensure", None)
            except ImportError:
                continue
            if pipEnsure:
                break
        pins = mrml.protected_pins()
        if pipEnsure is not None:  # Slicer 5.12 and later: its own dialog, progress and restart check
            from packaging.requirements import Requirement

            constraints = os.path.join(slicer.app.temporaryPath, "LowLightDenoise-constraints.txt")
            with open(constraints, "w") as f:
                f.write("\n".join(pins) + "\n")
            pipEnsure([Requirement(r) for r in missing], constraints=constraints, prompt_install=askConfirmation,
                      requester="LowLightDenoise", skip_in_testing=False)
            return
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                f"Low-Light Denoise needs these Python packages: {', '.join(missing)}.\n"
                "Install them now? This needs internet and takes a few minutes; Slicer's own numpy, "
                "SimpleITK, requests and PyTorch are kept as they are."):
            raise RuntimeError("Installation aborted by the user.")
        slicer.util.pip_install(" ".join(missing + pins))


class LowLightDenoiseTest(ScriptedLoadableModuleTest):
    """Self-test: a simulated low-light CT-like volume, a classical method and a learned model, 2D and 3D."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_denoise_classical_and_learned()
        self.setUp()
        self.test_compare_and_simulate()

    def test_denoise_classical_and_learned(self):
        self.delayDisplay("Denoising a simulated low-light volume")
        self.assertTrue(LowLightDenoiseLogic().ensureDependencies(askConfirmation=False))
        runs = mrml.self_test_denoise(slicer.mrmlScene, device="auto")
        self.delayDisplay(f"Test passed: {', '.join(runs)}")

    def test_compare_and_simulate(self):
        self.delayDisplay("Comparing methods")
        mrml.self_test_compare(slicer.mrmlScene, device="auto")
        self.delayDisplay("Test passed")
