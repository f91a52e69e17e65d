"""The one fake detector and fake router of the test suite: no model, no torch.

A test that needs a detector which answers from a table (to say exactly which image each model saw, at
what cost) or a router object (to see that the cascade hands it whole detections) takes it from here.
Import it as ``from tests.fakes import FakeDetector`` (``pytest.ini`` puts the repository root on the path).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from tinysaver_det.detection.types import Detections, Prediction


class FakeDetector:
    """Answers ``answers[image_id]`` (a list of scores; one box per score, category 1) at a fixed cost.

    ``calls`` records every batch of image ids it was given, in order. With ``sha256`` it describes
    itself through ``settings`` as a real detector does, so provenance checks can compare it.
    """

    def __init__(self, name: str, answers: Mapping[int, Sequence[float]], gflops: float, seconds: float = 0.001,
                 sha256: str | None = None):
        self.name, self.answers, self.gflops, self.seconds = name, answers, gflops, seconds
        self.calls: list[list[int]] = []
        if sha256 is not None:
            self.settings = {"name": name, "sha256": sha256}

    def predict(self, images, image_ids) -> Prediction:
        assert len(images) == len(image_ids)
        self.calls.append(list(image_ids))
        detections = [
            Detections(i, [[k, k, k + 10, k + 10] for k in range(len(self.answers[i]))], self.answers[i],
                       [1] * len(self.answers[i]))
            for i in image_ids
        ]
        return Prediction(detections, [self.gflops] * len(image_ids), [self.seconds] * len(image_ids))


class FakeRouter:
    """A router object: ``score(detections)`` is its confidence; it costs nothing."""

    def __init__(self, name: str, score: Callable[[Detections], float]):
        self.name, self.score = name, score

    def __call__(self, detections: Detections) -> float:
        return self.score(detections)

    def gflops(self, detections: Detections) -> float:
        return 0.0
