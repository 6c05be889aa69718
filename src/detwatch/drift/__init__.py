"""Drift detection for object-detection models, from mergeable per-hour aggregates.

Usage (the companion runs this behind ``POST /v1/models/{id}/drift``, the client's
``check_drift`` and ``detwatch drift``)::

    from detwatch.drift import drift_report

    report = drift_report(storage, "vehicles", "2024-01-01:2024-01-31", "2024-02-01:2024-02-28")
    report.significant_drift, report.class_drift, report.affected_classes

or, on samples binned by hand (:class:`PeriodSample`), :func:`compare`. The
companion also runs reports on a schedule and exports ``objdet.drift.score``
(:class:`detwatch.jobs.drift_schedule.DriftScheduler`, configured under ``drift:`` in ``detwatch.yaml``).

What is compared
----------------
Every test is two-sample: the reference period is a sample with its own noise, never
a truth to fit (a goodness-of-fit test against reference frequencies raises false
alarms in about a third of null runs at 1,000 rows).

===================== ============================== ===================== ==========================
kind                  test (p-value)                 effect (floor)        other distances
===================== ============================== ===================== ==========================
``class_mix``         chi-square of homogeneity,     Jensen-Shannon        chi-square statistic
                      2 x K table, rare classes      distance, base 2,
                      pooled (expected < 5)          0..1 (0.1)
``class_share``       two-proportion z (Fisher when  Cohen's h (0.2)       difference of shares
(per class)           counts are small)
``class_rate``        quasi-Poisson z of detections  ln rate ratio         detections per image of
(per class)           per image (the class's own     (ln 1.25)             the class, both periods
                      dispersion, from its per-image
                      sums)
``confidence``        binned two-sample KS,          KS D, 0..1 (0.1)      Wasserstein (confidence
(all, per class)      Smirnov's p at the binned D                          units), PSI
``detections_per_     binned KS (image is the unit)  KS D (0.1)            Wasserstein (detections),
image``                                                                    PSI
``box_area``          binned KS                      KS D (0.1)            Wasserstein (decades of
                                                                           relative area)
``aspect_ratio``      binned KS                      KS D (0.1)            Wasserstein (octaves of
                                                                           width/height)
``empty_rate``        two-proportion z / Fisher      Cohen's h (0.2)       difference of rates
===================== ============================== ===================== ==========================

The user guide's keys: ``class_drift`` is the class-mix Jensen-Shannon distance,
``confidence_drift`` the KS D of all confidences, ``count_drift`` the KS D of the
detections per image (each 0 to 1). ``new_classes`` (present now, absent from the
reference) and ``vanished_classes`` are named whatever their counts.
``affected_classes`` are the classes with a significant per-class finding (share, rate
per image or confidence), ranked by their contribution: the class's part of the total
variation distance between the two (class, confidence bin) distributions.

Why binned statistics are trustworthy
-------------------------------------
Class counts are exact. For the binned distributions: the KS D at the bin edges is
at most the exact D and falls short by at most the mass of the heaviest bin; its
p-value (Smirnov's distribution at that D) is conservative, never anti-conservative,
because the binned D is the exact D seen at fewer points. Wasserstein with mass at
bin centres is within one bin width of the exact distance (0.05 for confidence). The
tests check these bounds against SciPy on raw data.

The verdict and its defaults (:class:`DriftConfig`)
---------------------------------------------------
``significant_drift`` is true when at least one finding is significant after
**Holm's** correction across every test of the report *and* its effect reaches the
floor. Holm, not Benjamini-Hochberg: the verdict is "is anything drifting?", a
family-wise question; Holm bounds the chance of any false alarm by ``alpha`` under
any dependence between the tests (the per-class confidence tests share data with the
overall one; BH controls the false discovery proportion and needs positive
dependence), and each class named as affected is then individually trustworthy.

- ``alpha = 0.05``: the conventional family-wise false-alarm rate per report.
- Effect floors: statistical significance alone cries wolf on large samples (a
  million detections make a 0.005 shift "significant"). KS D 0.1 (a tenth of the
  detections cross some confidence threshold), Jensen-Shannon distance 0.1 (about a
  twelve-point move of share between two classes), Cohen's h 0.2 (Cohen's "small"
  effect, e.g. an empty-image rate going from 1 % to 4 %, or 40 % to 50 %) and a
  rate ratio of 1.25 (a class found a quarter more or a fifth less often per image)
  are changes worth someone's attention; set a floor to 0 (ratio 1) for significance
  only.
- ``min_images = 30`` and ``min_detections = 30`` per period (and per class for the
  per-class tests): below them the asymptotic p-values are unreliable and an obvious
  shift on a handful of images is still noise. Below ``min_images`` the report's
  status is ``insufficient_data`` (no verdict, ``significant_drift`` false); thinner
  features are listed in ``insufficient`` and left out of the tests.
- ``intra_image_correlation = 0``: a floor under the *measured* correlation (below).
  0 uses the measured design effects alone; a higher value never lets a test count
  more than ``n / (1 + rho (m - 1))`` effective detections.

Detections of one image move together
-------------------------------------
A dark frame lowers every confidence on it, a crowded scene brings many boxes of one
class, a camera sizes all its boxes alike: the image, not the detection, is the unit
of independent evidence. A fixed assumed correlation (0.1, before) let null splits
of streams whose detections move together more strongly flag drift in a fifth to a
half of runs (tests/test_drift_clustered_calibration.py). So every detection-level
test now uses the design effect *measured* on the period's own images, from per-image
sums stored in the aggregate cells (:mod:`detwatch.stats.clustered`): the ratio of the
cluster-robust (ratio-estimator) variance of the statistic's mean to the variance it
would have if the detections were independent. A test then counts ``n / deff``
effective detections (Kish).

- ``class_mix``: Pearson's chi-square divided by Rao and Scott's first-order design
  effect, from each class share's cluster-robust variance (exact when classes share
  one design effect, close otherwise);
- ``class_share``: the two-proportion test on each side's effective counts (``n /
  deff`` of that class's share);
- ``class_rate``: already per image; the quasi-Poisson dispersion is the class's own
  variance-to-mean ratio of detections per image;
- binned KS (confidence, per class too; box area; aspect ratio): sample sizes
  divided by the design effect of the mean (confidence, log10 area, log2 aspect). The
  KS statistic is a maximum over CDF points, each an average of indicators; for
  image effects that shift an image's values (the common case) an indicator's
  intra-image correlation is at most that of the values, so the mean's design effect
  is the conservative choice of one factor (a per-point one would need per-bin sums);
- ``detections_per_image`` and ``empty_rate``: the image is the unit already.

Each test reports ``reference_effective_n`` and ``current_effective_n`` beside the
raw counts, and each period its measured ``intra_image_correlation`` and
``effective_detections``. Detections stored before the per-image sums existed (schema
version 6) are taken as independent, and the report says so:
``variance_assumes_independence`` on the tests that used them and
``detections_assumed_independent`` on the period.
- ``alpha`` is per report: a schedule that runs every 15 minutes over overlapping
  windows re-tests much the same data, so alert on a sustained score, not one run.
"""

from detwatch.contract.shapes.drift import AB_VARIANTS, MAX_PERIOD_LENGTH, PERIOD_PATTERN
from detwatch.drift._from_storage import (
    DRIFT_KINDS,
    REQUEST_FIELDS,
    AggregateReader,
    drift_report,
    report_for_request,
)
from detwatch.drift._periods import (
    DriftInputError,
    Period,
    PeriodError,
    parse_periods,
)
from detwatch.drift._report import (
    ClassDrift,
    DriftConfig,
    DriftReport,
    Finding,
    PeriodSample,
    PeriodSummary,
    compare,
)
from detwatch.drift._text import format_report

__all__ = [
    "AB_VARIANTS",
    "DRIFT_KINDS",
    "MAX_PERIOD_LENGTH",
    "PERIOD_PATTERN",
    "REQUEST_FIELDS",
    "AggregateReader",
    "ClassDrift",
    "DriftConfig",
    "DriftInputError",
    "DriftReport",
    "Finding",
    "Period",
    "PeriodError",
    "PeriodSample",
    "PeriodSummary",
    "compare",
    "drift_report",
    "format_report",
    "parse_periods",
    "report_for_request",
]
