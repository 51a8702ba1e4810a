"""Models trained elsewhere: pose-tensorflow (DeeperCut's TensorFlow release) and DeepLabCut 2/3.

:mod:`.tf_checkpoint` reads TensorFlow V2 checkpoints without TensorFlow,
:mod:`.tfslim_resnet` reproduces their network in torch, :mod:`.dlc3` reproduces DeepLabCut 3's
PyTorch ResNet + heatmap-head models, and :mod:`.convert` turns a model folder, project or
snapshot into a :class:`deepercut.model.io.Model` (cached).
"""
