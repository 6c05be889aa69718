"""The review page in a real browser: headless Chromium against the companion on loopback.

What a reviewer sees and does is checked where it happens: the boxes' geometry in the
DOM against the prediction, each key posting the feedback it names, two reviewers in
two browsers never holding the same item, the sign-in page for a browser without a
session, and an image URI outside the images root refused. The companion is the real
app served by werkzeug on a loopback port; the items come in through ``/v1/predictions``
as a decorator's events would.

``DETWATCH_SCREENSHOT=docs/review-page.png`` makes the first test save the README's
screenshot there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
from flask import Flask
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

from _browser import browser
from detwatch.app import create_app, shutdown
from detwatch.config import Reviewer, Settings
from detwatch.demo.sample_detector import sample_scenes
from detwatch.storage import Storage

REVIEWERS = (Reviewer("ann", "ann-token-0001"), Reviewer("bob", "bob-token-0002"))
# The astronaut photograph, with what a detector might say of it.
DETECTIONS = [
    {"class": "person", "confidence": 0.91, "box": [140.0, 30.0, 420.0, 512.0]},
    {"class": "flag", "confidence": 0.62, "box": [20.0, 10.0, 150.0, 190.0]},
    {"class": "helmet", "confidence": 0.35, "box": [180.0, 20.0, 300.0, 150.0]},
]


@dataclass
class Companion:
    url: str
    app: Flask
    dataset_id: str
    images: Path

    def storage(self) -> Storage:
        storage: Storage = self.app.extensions["detwatch.storage"]
        return storage


@pytest.fixture
def companion(tmp_path: Path) -> Iterator[Companion]:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "astronaut.png"), cv2.cvtColor(sample_scenes()["astronaut"], cv2.COLOR_RGB2BGR))
    (tmp_path / "secret.png").write_bytes((images / "astronaut.png").read_bytes())
    app = create_app(Settings(data_dir=tmp_path / "data", images_root=images, reviewers=REVIEWERS))
    client = app.test_client()
    dataset = client.post("/v1/datasets", json={"name": "astronauts"}).get_json()
    policy = {"config": {"random_sample": {"enabled": True, "rate": 1.0}}, "target_dataset_id": dataset["id"]}
    assert client.put("/v1/models/spacecam/data-engine", json=policy).status_code == 200
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Companion(f"http://127.0.0.1:{server.server_port}", app, dataset["id"], images)
    finally:
        server.shutdown()
        server.server_close()
        shutdown(app)


def predictions(companion: Companion, count: int, uri: Callable[[int], str] | None = None) -> None:
    """``count`` events on the astronaut image, each a flagged item (oldest first)."""
    now = time.time_ns()
    events = [
        {
            "prediction_id": f"p{i}",
            "model_id": "spacecam",
            "model_version": "v1",
            "time_unix_nano": now + i,
            "image": {
                "key": f"astronaut-{i}.png",
                "uri": uri(i) if uri else f"file://{companion.images / 'astronaut.png'}",
                "width": 512,
                "height": 512,
            },
            "detections": DETECTIONS,
        }
        for i in range(count)
    ]
    response = companion.app.test_client().post("/v1/predictions", json={"predictions": events})
    assert response.get_json()["accepted"] == count


def sign_in(driver: Any, companion: Companion, reviewer: Reviewer) -> None:
    driver.get(f"{companion.url}/review/{companion.dataset_id}")
    assert "/review/sign-in" in driver.current_url
    driver.find_element(By.ID, "token").send_keys(reviewer.token)
    driver.find_element(By.ID, "sign-in-button").click()
    ready(driver)


def ready(driver: Any) -> str:
    """Waits for the item page's script (image loaded, boxes placed); the item's id."""
    WebDriverWait(driver, 10).until(
        lambda d: (
            d.find_elements(By.ID, "queue-empty")
            or d.execute_script("const r = document.getElementById('review'); return r && r.dataset.ready === 'true';")
        )
    )
    found = driver.execute_script(
        "const e = document.getElementById('page-data'); return e ? JSON.parse(e.textContent).item_id : null;"
    )
    return str(found) if found else ""


def press(driver: Any, *keys: str) -> None:
    driver.execute_script("document.activeElement && document.activeElement.blur();")
    ActionChains(driver).send_keys(*keys).perform()


def item(companion: Companion, item_id: str) -> Any:
    found = companion.storage().get_flagged_item(companion.dataset_id, item_id)
    assert found is not None
    return found


def feedback_on(companion: Companion, prediction_id: str) -> list[tuple[Any, ...]]:
    records = companion.storage().list_feedback(model_id="spacecam", limit=1000)
    found = [
        (r.type, r.detection_index, r.corrected_class, tuple(r.corrected_box) if r.corrected_box else None, r.reviewer)
        for r in records
        if r.prediction_id == prediction_id
    ]
    return sorted(found, key=lambda f: (f[0], str(f[1])))


def test_the_boxes_are_drawn_where_the_prediction_says(companion: Companion) -> None:
    predictions(companion, 1)
    with browser() as driver:
        sign_in(driver, companion, REVIEWERS[0])
        geometry = driver.execute_script(
            """
            const img = document.getElementById('image').getBoundingClientRect();
            const scale = document.getElementById('image').naturalWidth / img.width;
            return [...document.querySelectorAll('.box')].map((b) => {
              const r = b.getBoundingClientRect();
              return [(r.left - img.left) * scale, (r.top - img.top) * scale,
                      (r.right - img.left) * scale, (r.bottom - img.top) * scale,
                      b.querySelector('.tag').textContent];
            });
            """
        )
        assert len(geometry) == len(DETECTIONS)
        for drawn, detection in zip(geometry, DETECTIONS, strict=True):
            assert drawn[:4] == pytest.approx(detection["box"], abs=1.0), (drawn, detection)
            assert drawn[4] == f"{detection['class']} {detection['confidence']:.2f}"
        # The slider hides what is under it: the 0.35 helmet goes at 0.5.
        slider = driver.find_element(By.ID, "threshold")
        driver.execute_script("arguments[0].value = 0.5; arguments[0].dispatchEvent(new Event('input'));", slider)
        hidden = driver.execute_script(
            "return [...document.querySelectorAll('.box.hidden .tag')].map(t => t.textContent)"
        )
        assert hidden == ["helmet 0.35"]
        driver.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'));", slider)
        shot = os.environ.get("DETWATCH_SCREENSHOT")
        driver.save_screenshot(shot or str(companion.images.parent / "review-page.png"))
        assert Path(shot or companion.images.parent / "review-page.png").stat().st_size > 10_000


def test_each_key_posts_the_feedback_it_names_and_the_label_is_what_the_page_shows(companion: Companion) -> None:
    predictions(companion, 2)
    with browser() as driver:
        sign_in(driver, companion, REVIEWERS[0])
        first = ready(driver)
        press(driver, "d")  # the person (selected first) is a false positive
        press(driver, Keys.TAB)  # the flag ...
        Select(driver.find_element(By.ID, "class-choice")).select_by_value("helmet")
        press(driver, "l")  # ... is a helmet
        press(driver, Keys.TAB, "c")  # the helmet is right
        Select(driver.find_element(By.ID, "class-choice")).select_by_value("person")
        press(driver, "m")  # a missed person, drawn by dragging over the image
        image = driver.find_element(By.ID, "image")
        scale = driver.execute_script("return arguments[0].clientWidth / arguments[0].naturalWidth", image)
        (
            ActionChains(driver)
            .move_to_element_with_offset(
                image, int(-image.size["width"] / 2 + 300 * scale), int(-image.size["height"] / 2 + 300 * scale)
            )
            .click_and_hold()
            .move_by_offset(int(100 * scale), int(150 * scale))
            .release()
            .perform()
        )
        press(driver, Keys.ENTER)
        second = ready(driver)
        assert second and second != first
        labelled = item(companion, first)
        assert labelled.status == "labeled" and labelled.reviewer == "ann"
        got = feedback_on(companion, labelled.prediction_id)
        assert [(t, i, c) for t, i, c, _, _ in got] == [
            ("correct", 2, None),
            ("false_positive", 0, None),
            ("missed_object", None, "person"),
            ("wrong_label", 1, "helmet"),
        ]
        assert all(r == "ann" for *_, r in got)
        missed_box = next(b for t, _, _, b, _ in got if t == "missed_object")
        assert missed_box == pytest.approx((300, 300, 400, 450), abs=3 / scale)
        classes = sorted(a["class"] for a in labelled.label)
        assert classes == ["helmet", "helmet", "person"]  # the relabelled flag, the kept helmet, the missed person

        # Adjust: "a" shows the corners; dragging the bottom-right one by (+40, +30) px of the image.
        press(driver, "a")
        handle = driver.find_element(By.CSS_SELECTOR, ".box.selected .handle.se")
        ActionChains(driver).drag_and_drop_by_offset(handle, int(-40 * scale), int(-30 * scale)).perform()
        press(driver, Keys.ENTER)
        ready(driver)
        adjusted = item(companion, second)
        wrong_box = [f for f in feedback_on(companion, adjusted.prediction_id) if f[0] == "wrong_box"]
        assert len(wrong_box) == 1 and wrong_box[0][1] == 0
        assert wrong_box[0][3] == pytest.approx((140, 30, 380, 482), abs=3 / scale)


def test_reject_and_skip_and_two_reviewers_never_hold_the_same_item(companion: Companion) -> None:
    predictions(companion, 4)
    with browser() as ann, browser() as bob:
        sign_in(ann, companion, REVIEWERS[0])
        sign_in(bob, companion, REVIEWERS[1])
        seen_ann, seen_bob = [ready(ann)], [ready(bob)]
        assert seen_ann[0] != seen_bob[0]
        ann.refresh()
        assert ready(ann) == seen_ann[0]  # a reload shows the item ann holds, it claims no other
        press(bob, "s")  # bob skips: his item goes back to the queue, he gets another
        seen_bob.append(ready(bob))
        assert seen_bob[1] not in (seen_ann[0], seen_bob[0])
        press(ann, "x")  # ann rejects hers, and gets the one bob skipped or the last
        seen_ann.append(ready(ann))
        assert seen_ann[1] != seen_bob[1]
        assert item(companion, seen_ann[0]).status == "rejected"
        assert item(companion, seen_bob[0]).status in ("needs_review", "in_review")
        progress = companion.app.test_client().get(f"/v1/datasets/{companion.dataset_id}").get_json()["review"]
        assert progress["rejected"] == 1 and progress["claimed"] == 2
        assert progress["by_reviewer"] == {"ann": {"rejected": 1, "claimed": 1}, "bob": {"claimed": 1}}


def test_a_browser_without_a_session_gets_the_sign_in_page(companion: Companion) -> None:
    predictions(companion, 1)
    with browser() as driver:
        driver.get(f"{companion.url}/review/{companion.dataset_id}")
        assert driver.find_elements(By.ID, "sign-in") and not driver.find_elements(By.ID, "review")
        driver.find_element(By.ID, "token").send_keys("not-a-token")
        driver.find_element(By.ID, "sign-in-button").click()
        # The form posts and the answer is a new page: wait for it rather than read the old one.
        error = WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "sign-in-error"))
        assert error[0].text == "unknown token"
        cookie = driver.get_cookie("detwatch_review")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/review"


def test_an_image_outside_the_images_root_is_refused_and_the_page_says_where_it_is(companion: Companion) -> None:
    escape = f"file://{companion.images}/../secret.png"
    predictions(companion, 1, uri=lambda i: escape)
    with browser() as driver:
        sign_in(driver, companion, REVIEWERS[0])
        assert not driver.find_elements(By.ID, "image")
        assert "'..' segment" in driver.find_element(By.ID, "no-image").text
        assert driver.find_element(By.ID, "image-uri").text == escape
        # The boxes are still there to review, over a blank stage of the image's size.
        assert len(driver.find_elements(By.CSS_SELECTOR, ".box")) == len(DETECTIONS)
        item_id = ready(driver)
        status = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('/review/{companion.dataset_id}/items/{item_id}/image').then(r => done(r.status));"
        )
        assert status == 403
