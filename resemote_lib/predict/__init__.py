"""Using a trained model: faces and their emotions in photos, folders, videos and a webcam, and export.

One module per step, in the order a prediction runs:

- ``decode.py``: images as RGB uint8 arrays (files, PIL images, arrays of a stated colour order);
- ``predictor.py``: the ``Predictor``: faces found (``data/faces.py``: the detectors, shared
  with the folder dataset's ``crop_faces``), cropped, preprocessed as evaluation does, classified;
- ``batch.py``: files and folders in batches, and the CSV / JSON-lines ``ResultWriter``;
- ``video.py``: a video file or a webcam, frame by frame, optionally annotated;
- ``outputs.py`` and ``command.py``: the command line's ``predict``, every output checked first;
- ``export.py``: the model and its preprocessing as ONNX or TorchScript.
"""

from ..data.faces import Detector, FixedBoxes, HaarDetector, YuNetDetector, expand_box, make_detector
from .batch import ResultWriter, iter_image_files, predict_files, write_results
from .command import predict_command
from .decode import to_rgb
from .predictor import Face, Predictor, Result
from .video import draw_faces, predict_video

__all__ = ["Detector", "Face", "FixedBoxes", "HaarDetector", "Predictor", "Result", "ResultWriter",
           "YuNetDetector", "draw_faces", "expand_box", "iter_image_files", "make_detector", "predict_command",
           "predict_files", "predict_video", "to_rgb", "write_results"]
