"""Layer 1, ``data``: what the models are asked about.

Benchmarks on disk (one module per on-disk format: :mod:`.tvbench`, which also dispatches on a
manifest's format, :mod:`.tomato`, :mod:`.longvideobench`, :mod:`.videomme`, :mod:`.vcgbench`), frame reading
(:mod:`.video`), dataset and model manifests (:mod:`.manifests`), the synthetic
renderer of the embedded default benchmark (:mod:`.synthetic`) and where the files outside the
package are found (:mod:`.paths`: ``$FLOWUTILS_HOME``, else the checkout). Imports no other layer.
"""

from .tvbench import VideoQASample, load_benchmark, load_task, option_letters, validate_benchmark
from .video import BenchmarkError, VideoClip, read_clip, read_frames, sample_clip, sample_frames, uniform_frame_indices

__all__ = ["BenchmarkError", "VideoClip", "VideoQASample", "load_benchmark", "load_task", "option_letters",
           "read_clip", "read_frames", "sample_clip", "sample_frames", "uniform_frame_indices", "validate_benchmark"]
