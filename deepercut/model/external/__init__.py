"""Models trained elsewhere: pose-tensorflow (DeeperCut's TensorFlow release) and DeepLabCut.

:mod:`.tf_checkpoint` reads TensorFlow V2 checkpoints without TensorFlow,
:mod:`.tfslim_resnet` reproduces their network in torch, and :mod:`.convert` turns a model
folder, project or snapshot into a :class:`deepercut.model.io.Model` (cached).
"""
