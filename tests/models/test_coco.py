"""COCO's names and the words the alt text makes of them."""

from convscope.models.coco import COCO_CLASSES, KEYPOINTS, SKELETON, plural, with_article


def test_the_80_classes_under_their_original_ids():
    assert len(COCO_CLASSES) == 80
    assert (COCO_CLASSES[1], COCO_CLASSES[17], COCO_CLASSES[47], COCO_CLASSES[90]) == (
        "person", "cat", "cup", "toothbrush")
    assert 12 not in COCO_CLASSES and 83 not in COCO_CLASSES


def test_the_skeleton_joins_the_17_keypoints():
    assert len(KEYPOINTS) == 17 and KEYPOINTS[0] == "nose"
    assert {i for edge in SKELETON for i in edge} == set(range(17))


def test_plurals_and_articles():
    assert [plural(n) for n in ("person", "cup", "bus", "wine glass", "knife", "skis",
                                "dining table", "couch")] == [
        "people", "cups", "buses", "wine glasses", "knives", "skis", "dining tables", "couches"]
    assert with_article("orange") == "an orange" and with_article("cup") == "a cup"
