"""Training augmentation for fine-tuning on image files, sized to the images and to the model's input.

Owns ``Augmentation`` (what a run does to each training image, with the reason, recorded in the run)
and ``choose_augmentation``, the policy:

* a **small input** with few images (under ``FEW_PER_CLASS`` a class): none, as measured;
* a **small input** (a side of at most ``SMALL_INPUT`` pixels, as LeNet's 28 or CIFAR's 32): the image
  goes through the model's own inference transform, then a random shift (pad by an eighth of the side,
  reflected, and crop back) and a horizontal flip: the CIFAR recipe. A random resized crop at such
  sizes throws away too much of a few hundred pixels (it cost 4-8 points on 28 px images, see
  BENCHMARKS.md);
* a **photo-sized input** and images at least that size: ``RandomResizedCrop`` down to 35% of the
  area (fastai's ``min_scale``), and a flip, on the decoded image, as timm and fastai do for
  ImageNet-style training;
* a **photo-sized input** and images **smaller than it** (magnified to reach it): none. On 150 px
  photos at 224 px, the ImageNet MobileNetV2 fine-tuned (``full``) tested 84.3% with none, 80.7% with
  flips alone and 79.7% with random resized crops of 80-100% and flips (BENCHMARKS.md, "Defaults").

The model's inference transform (``ZooModel.transforms``) is never changed here; validation and test
images always go through it. May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Augmentation", "choose_augmentation", "NO_AUGMENTATION", "SMALL_INPUT", "FEW_PER_CLASS", "MIN_CROP_AREA"]

SMALL_INPUT = 64  # input sides up to this get shifts and flips; larger ones crops, or none for smaller images
# Below this many training images a class, a small input gets no augmentation at all: on 28 px folders of
# 16-40 images a class, shifts and flips cost 6-12 points in every setting measured (BENCHMARKS.md, Defaults).
FEW_PER_CLASS = 100
MIN_CROP_AREA = 0.35  # the smallest crop of a photo (fastai's min_scale; timm's ImageNet default is 0.08)


@dataclass(frozen=True)
class Augmentation:
    """What happens to each training image, and why (``why`` is printed and recorded).

    Attributes:
        kind: ``none``, ``shift_flip`` (pad, random crop back, flip) or ``resized_crop_flip``.
        pad: ``shift_flip``: pixels of (reflected) padding on each side.
        min_area: ``resized_crop_flip``: the smallest crop as a share of the image's area.
        flip: random horizontal flips.
        why: one sentence for the log and the run record.
    """

    kind: str = "none"
    pad: int = 0
    min_area: float = 1.0
    flip: bool = False
    why: str = ""

    def describe(self) -> str:
        """A short phrase: ``shift by up to 3 px and flip``."""
        if self.kind == "shift_flip":
            return f"shift by up to {self.pad} px" + (" and flip" if self.flip else "")
        if self.kind == "resized_crop_flip":
            return f"random resized crops of {self.min_area:.0%}-100% of the area" + (" and flip" if self.flip else "")
        return "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def transform(self, model: Any) -> Any:
        """The training transform for ``model`` (a ``ZooModel``): PIL image -> normalised tensor.

        Raises:
            ValueError: the model has no preprocessing (it cannot say how its inputs look).
        """
        from torchvision.transforms import v2

        from zoo.preprocess import train_transform

        if self.kind == "none":
            return model.transforms
        pre = model.preprocessing
        if pre is None:
            raise ValueError(f"model {model.name!r} has no preprocessing to augment")
        if self.kind == "shift_flip":
            # After the inference transform: the same resize and crop as at test time, then a shift.
            h, w = pre.crop
            flip = [v2.RandomHorizontalFlip()] if self.flip else []
            return v2.Compose([model.transforms, v2.RandomCrop((h, w), padding=self.pad, padding_mode="reflect"),
                               *flip])
        return train_transform(pre, mean_image=model.mean_image, flip=self.flip, scale=(self.min_area, 1.0))


NO_AUGMENTATION = Augmentation(why="augmentation turned off")


def choose_augmentation(input_side: int, image_side: int | None, per_class: float | None = None) -> Augmentation:
    """The augmentation for a model whose input is ``input_side`` pixels square, trained on images whose
    median shorter side is ``image_side`` (None: unknown, taken as large), ``per_class`` training images
    per class on average (None: unknown, taken as many).

    Example:
        >>> choose_augmentation(28, 150).describe()
        'shift by up to 3 px and flip'
        >>> choose_augmentation(28, 150, per_class=20).kind
        'none'
        >>> choose_augmentation(224, 150).kind, choose_augmentation(224, 300).min_area
        ('none', 0.35)
    """
    if input_side <= SMALL_INPUT and per_class is not None and per_class < FEW_PER_CLASS:
        return Augmentation("none", why=f"the input is small ({input_side} px) and there are few images "
                                        f"({per_class:.0f} a class): shifts and flips cost accuracy there")
    if input_side <= SMALL_INPUT:
        pad = max(1, input_side // 8)
        return Augmentation("shift_flip", pad=pad, flip=True,
                            why=f"the input is small ({input_side} px): shifts of up to {pad} px and flips, no "
                                "resized crops (they cut too much of a small image)")
    if image_side is not None and 0 < image_side < input_side:
        return Augmentation("none", why=f"the images (median side {image_side} px) are smaller than the input "
                                        f"({input_side} px): magnified to fit it, they get no crops or flips, which "
                                        "cost accuracy there")
    return Augmentation("resized_crop_flip", min_area=MIN_CROP_AREA, flip=True,
                        why=f"photo-sized input ({input_side} px): random resized crops of {MIN_CROP_AREA:.0%}-100% "
                            "and flips" + (f" (images of median side {image_side} px)" if image_side else ""))
