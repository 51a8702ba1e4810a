"""Models trained elsewhere: pose-tensorflow (DeeperCut's TensorFlow release) and DeepLabCut 2/3.

:mod:`.tf_checkpoint` reads TensorFlow V2 checkpoints without TensorFlow,
:mod:`.tfslim_resnet` reproduces their network in torch, :mod:`.dlc3` reproduces DeepLabCut 3's
PyTorch ResNet + heatmap-head models, and :mod:`.formats` tells which of these a path holds;
:mod:`deepercut.model.convert` turns one into a :class:`deepercut.model.io.Model` (cached).
"""
