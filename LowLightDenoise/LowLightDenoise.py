"""LowLightDenoise: denoise and restore low-light medical images in 3D Slicer.

Only what needs Qt or the Slicer application lives here (widget, dialogs, dependency installation,
the module classes). Everything that acts on MRML nodes, the view layout and the self-test's checks
are in ``LowLightDenoiseLib.mrml`` and run without this file, in batch scripts and in CI.
"""
import logging
import os
import sys
from typing import Annotated, Optional, Union

# Loaded from a source checkout (Application Settings > Modules: <repo>/LowLightDenoise) the library is the folder
# beside this module's folder; an installed extension has it beside this file, where Slicer already looks.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_CHECKOUT, "LowLightDenoiseLib", "__init__.py")) and _CHECKOUT not in sys.path:
    sys.path.insert(0, _CHECKOUT)

import qt  # noqa: E402
import slicer  # noqa: E402
import vtk  # noqa: E402
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode  # noqa: E402
from slicer.parameterNodeWrapper import Choice, Default, Minimum, WithinRange, parameterNodeWrapper  # noqa: E402
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,  # noqa: E402
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin  # noqa: E402

from LowLightDenoiseLib import DEFAULT_METHOD, __version__, jobs, mrml  # noqa: E402
from LowLightDenoiseLib.errors import LowLightDenoiseError  # noqa: E402
from LowLightDenoiseLib.mrml import samples  # noqa: E402
from LowLightDenoiseLib.options import DEVICES, FLIP_COUNTS, MAX_STRENGTH, MODES, RunOptions  # noqa: E402

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
        self.parent.contributors = ["LowLightDenoise maintainers (https://github.com/lowlightdenoise)"]
        self.parent.helpText = (
            f"<b>{mrml.NOTICE}</b> Denoise and restore low-light CT, MR, X-ray, ultrasound and photographic "
            "images with learned (PyTorch/MONAI) and classical methods, compare them, simulate low-light "
            "acquisitions, and measure the result. Every job runs in a separate process (Cancel ends it); "
            "every output volume's name and description say which method and version made it. Try it on "
            "the 'Low-Light Denoise' samples of the Sample Data module. "
            f'See the <a href="{HOMEPAGE}">documentation</a> (version {__version__}).')
        self.parent.acknowledgementText = (
            "Built on 3D Slicer, PyTorch, MONAI, SimpleITK and scikit-image. The sample crops come from "
            "openly licensed sources listed in the repository.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """The shipped CT crop and its low-light version in the Sample Data module (checked by SHA-256)."""
    import SampleData

    samples.register_samples(SampleData.SampleDataLogic, os.path.dirname(os.path.abspath(__file__)))


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
    calibrate: Annotated[bool, Default(False)]
    adaptSeconds: Annotated[int, WithinRange(0, 3600), Default(0)]
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
    return mrml.DenoiseSettings(method or p.method, options, p.calibrate, float(p.adaptSeconds))


def simulationSettings(p) -> mrml.SimulationSettings:
    return mrml.SimulationSettings(noise=p.noiseType, brightness=p.brightness, gamma=p.gamma, peak=p.peak,
                                   read_noise=p.readNoise, level=p.noiseLevel, seed=p.seed)


class LowLightDenoiseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt only: builds a job from the controls, starts it in a child process, polls it, publishes it."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._process = None  # the running jobs.JobProcess
        self._onDone = None
        self._logPath = None
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._poll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LowLightDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LowLightDenoiseLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        ui = self.ui
        for button, slot in ((ui.applyButton, self.onApply), (ui.compareButton, self.onCompare),
                             (ui.simulateButton, self.onSimulate), (ui.cancelButton, self.onCancel),
                             (ui.openLogButton, self.onOpenLog), (ui.downloadModelButton, self.onDownloadModel),
                             (ui.importModelButton, self.onImportModel), (ui.refreshModelsButton, self.refreshMethods)):
            button.connect("clicked(bool)", slot)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self._onMethodChanged)
        self.ui.compareListWidget.connect("itemChanged(QListWidgetItem*)", self._onCompareChanged)
        self.refreshMethods()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancel()
        jobs.shutdown_workers()  # the idle worker process kept warm for the next job
        self.removeObservers()

    def onReload(self) -> None:
        """Reload the library too (Slicer's Reload re-reads only this file); jobs always start a fresh one."""
        self.onCancel()
        for name in [n for n in sys.modules if n == "LowLightDenoiseLib" or n.startswith("LowLightDenoiseLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

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
        """Fill the method drop-down (short names, the title as tooltip), the compare list and the models table."""
        choices = mrml.method_choices()
        combo, listing = self.ui.methodComboBox, self.ui.compareListWidget
        combo.blockSignals(True)
        combo.clear()
        for row, (name, label, tooltip) in enumerate(choices):
            combo.addItem(label, name)
            combo.setItemData(row, tooltip, qt.Qt.ToolTipRole)
        combo.blockSignals(False)
        listing.blockSignals(True)
        listing.clear()
        for name, label, tooltip in choices:
            item = qt.QListWidgetItem(label)
            item.setData(qt.Qt.UserRole, name)
            item.setToolTip(tooltip)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked)
            listing.addItem(item)
        listing.blockSignals(False)
        self._fillModelsTable()
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

    def _fillModelsTable(self) -> None:
        headers, rows = mrml.models_table()
        table = self.ui.modelsTableWidget
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(rows))
        table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        for row, values in enumerate(rows):
            for col, value in enumerate(values):
                table.setItem(row, col, qt.QTableWidgetItem(value))

    # ---------------------------------------------------------------- buttons

    def _updateButtons(self, caller=None, event=None) -> None:
        busy = self._process is not None
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = hasInput and not busy and self.ui.methodComboBox.count > 0
        self.ui.compareButton.enabled = hasInput and not busy and bool(self._tickedMethods())
        self.ui.simulateButton.enabled = hasInput and not busy
        self.ui.downloadModelButton.enabled = self.ui.importModelButton.enabled = not busy
        self.ui.cancelButton.enabled = busy
        self.ui.openLogButton.enabled = self._logPath is not None
        auto = bool(self._parameterNode and self._parameterNode.autoStrength)
        self.ui.strengthSliderWidget.enabled = not auto
        self.ui.calibrateCheckBox.enabled = auto

    def onApply(self) -> None:
        self._denoise([self._parameterNode.method], self._showDenoised, "Denoising failed.")

    def onCompare(self) -> None:
        self._denoise(self._tickedMethods(), self._showCompared, "Comparison failed.")

    def _denoise(self, methods, show, failure: str) -> None:
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            p = self._parameterNode
            if not self.logic.ensureDependencies(methods):
                return
            job = mrml.prepare_denoise(p.inputVolume, denoiseSettings(p, methods[0]), p.referenceVolume, methods)
            self._start(mrml.start_denoise(job, **self.logic.launchOptions()),
                        lambda process: show(job, process.result()))

    def onSimulate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Simulation failed.", waitCursor=True):
            p = self._parameterNode
            inputNode = p.inputVolume
            job = mrml.start_simulation(inputNode, simulationSettings(p), **self.logic.launchOptions())
            self._start(job.process, lambda process: self._showVolumes(
                inputNode, mrml.publish_simulated(slicer.mrmlScene, job)))

    def _selectedModel(self, what: str) -> Optional[str]:
        rows = self.ui.modelsTableWidget.selectionModel().selectedRows()
        if not rows:
            slicer.util.warningDisplay(f"Select {what} in the Models table first.")
        return self.ui.modelsTableWidget.item(rows[0].row(), 0).text() if rows else None

    def onDownloadModel(self) -> None:
        name = self._selectedModel("a model")
        if name:
            with slicer.util.tryWithErrorDisplay(f"Download of model {name} failed.", waitCursor=True):
                self._start(mrml.start_download(name, **self.logic.launchOptions()), lambda _: self.refreshMethods())

    def onImportModel(self) -> None:
        name = self._selectedModel("the model the file belongs to")
        path = name and qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), f"Weights of model {name}", "",
                                                       "Weights (*.safetensors *.pt *.pth);;All files (*)")
        if path:
            with slicer.util.tryWithErrorDisplay(f"Import of model {name} failed.", waitCursor=True):
                from LowLightDenoiseLib import registry

                registry.import_model(name, path)
                self.refreshMethods()

    def onCancel(self) -> None:
        """End the running job's process (within a second); nothing is added to the scene."""
        if self._process is None:
            return
        self._timer.stop()
        self._process.cancel()
        self._process, self._onDone = None, None
        self.ui.progressBar.value = 0
        self._setStatus("Cancelled; nothing was added to the scene.")
        self._updateButtons()

    def onOpenLog(self) -> None:
        if self._logPath is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self._logPath)))

    # ---------------------------------------------------------------- the job's process, polled by the timer

    def _start(self, process, onDone) -> None:
        """Follow ``process`` (a started jobs.JobProcess); ``onDone(process)`` publishes its result."""
        self._process, self._onDone = process, onDone
        self._logPath = process.log_path
        self.ui.progressBar.value = 0
        self._setStatus("Starting...")
        self._updateButtons()
        self._timer.start()

    def _poll(self) -> None:
        process = self._process
        if process is None:
            self._timer.stop()
            return
        process.poll()  # returns at once: reads what the child wrote since the last tick
        self.ui.progressBar.value = int(round(100 * process.fraction))
        if process.message:
            self._setStatus(process.message)
        if process.running:
            return
        self._timer.stop()
        onDone = self._onDone
        self._process, self._onDone = None, None
        self._updateButtons()
        if process.state == jobs.SUCCEEDED:
            with slicer.util.tryWithErrorDisplay("Could not show the result.", waitCursor=True):
                onDone(process)
                self.ui.progressBar.value = 100
        else:
            logging.error(f"{process.error}\n{process.error_details}")
            self._setStatus(process.error)
            slicer.util.errorDisplay(process.error, detailedText=process.error_details)

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 3000)

    # ---------------------------------------------------------------- results on the main thread

    def _showDenoised(self, job, result) -> None:
        nodes, table = mrml.publish_denoise(slicer.mrmlScene, job, result)
        self._showVolumes(slicer.mrmlScene.GetNodeByID(job.input_node_id), nodes[0], table)
        output = result.outputs[0]
        row = output.row
        self._setStatus(f"{row['method']}: {row['seconds']:.1f} s on {row['device']} ({row['mode']}). "
                        + " ".join(result.warnings + output.warnings))
        if result.warnings or output.warnings:
            slicer.util.warningDisplay(" ".join(result.warnings + output.warnings), windowTitle="Low-Light Denoise")

    def _showCompared(self, job, result) -> None:
        nodes, table = mrml.publish_denoise(slicer.mrmlScene, job, result,
                                            keep_outputs=self._parameterNode.keepCompareOutputs,
                                            table_name=f"{job.input_name} comparison")
        chart = mrml.metrics_plot_node(slicer.mrmlScene, table, mrml.default_plot_column(table))
        inputNode = slicer.mrmlScene.GetNodeByID(job.input_node_id)
        self._showVolumes(inputNode, nodes[0] if nodes else inputNode, table, chart)
        self._setStatus(" ".join([f"Compared {len(result.outputs)} methods; see table and chart."] + result.warnings))

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
    """Thin wrapper over ``LowLightDenoiseLib.mrml`` plus what needs the application (installs, PythonSlicer)."""

    def getParameterNode(self):
        return LowLightDenoiseParameterNode(super().getParameterNode())

    def denoise(self, inputNode, method, referenceNode=None, **options):
        """In this process: ``(outputNode, tableNode)``; options as for ``mrml.denoise_node``."""
        return mrml.denoise_node(slicer.mrmlScene, inputNode, method, reference_node=referenceNode, **options)

    def compare(self, inputNode, methods, referenceNode=None, **options):
        """``(tableNode, outputNodes, chartNode)`` of several methods on one input."""
        return mrml.compare_nodes(slicer.mrmlScene, inputNode, methods, reference_node=referenceNode, **options)

    def simulate(self, inputNode, settings=None):
        return mrml.simulate_node(slicer.mrmlScene, inputNode, settings)

    def launchOptions(self) -> dict:
        """How jobs start inside Slicer: with PythonSlicer, their files under Slicer's temporary folder."""
        return {"python": jobs.find_python(slicer.app.slicerHome), "temp_root": slicer.app.temporaryPath}

    def ensureDependencies(self, methods=(), askConfirmation: bool = True) -> bool:
        """Install what ``methods`` need, after asking: PyTorch (through the PyTorch extension) and MONAI only
        for a learned method; Slicer's own numpy, scipy, SimpleITK, requests and torch are never replaced
        (``mrml.install_requirements``). Returns False when the user declines."""
        learned = mrml.needs_torch(methods)
        if learned and not self._ensureTorch(askConfirmation):
            return False
        missing = mrml.missing_requirements(learned=learned)
        return mrml.install_requirements(missing, ask=askConfirmation, confirm=slicer.util.confirmOkCancelDisplay,
                                         pip_install=slicer.util.pip_install, temp_dir=slicer.app.temporaryPath) \
            and not mrml.missing_requirements(learned=learned)

    def _ensureTorch(self, askConfirmation: bool) -> bool:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise LowLightDenoiseError(
                "Learned methods need the PyTorch extension: install 'PyTorch' from the Extensions Manager and "
                "restart Slicer (classical methods work without it).") from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if torchLogic.installTorch(askConfirmation=askConfirmation,
                                       torchVersionRequirement=mrml.TORCH_REQUIREMENT) is None:
                return False
        problem = mrml.torch_problem()
        if problem:
            slicer.util.warningDisplay(problem, windowTitle="Low-Light Denoise")
        return True


class LowLightDenoiseTest(ScriptedLoadableModuleTest):
    """Self-test on the module's SampleData pair: jobs in a child process, then classical and learned methods."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_jobs_in_a_child_process_on_the_sample_data()
        self.setUp()
        self.test_denoise_classical_and_learned()
        self.setUp()
        self.test_compare_and_simulate()

    def test_jobs_in_a_child_process_on_the_sample_data(self):
        self.delayDisplay("Loading the Low-Light Denoise samples")
        import SampleData

        registerSampleData()
        clean, noisy = (SampleData.SampleDataLogic().downloadSample(s.name) for s in samples.SAMPLES)
        self.assertIsNotNone(noisy)
        self.assertTrue(LowLightDenoiseLogic().ensureDependencies(["tv"], askConfirmation=False))
        runs = mrml.self_test_child_process(slicer.mrmlScene, noisy, clean, **LowLightDenoiseLogic().launchOptions())
        self.delayDisplay(f"Test passed: {', '.join(runs)}")

    def test_denoise_classical_and_learned(self):
        self.delayDisplay("Denoising a simulated low-light volume")
        self.assertTrue(LowLightDenoiseLogic().ensureDependencies([DEFAULT_METHOD], askConfirmation=False))
        runs = mrml.self_test_denoise(slicer.mrmlScene, device="auto")
        self.delayDisplay(f"Test passed: {', '.join(runs)}")

    def test_compare_and_simulate(self):
        self.delayDisplay("Comparing methods")
        mrml.self_test_compare(slicer.mrmlScene, device="auto")
        self.delayDisplay("Test passed")
