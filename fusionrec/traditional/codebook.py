"""Visual vocabularies and the encodings that turn descriptors into one vector.

A :class:`Codebook` holds only numpy arrays, so it is cheap to send to worker
processes and to pickle with a fitted estimator.

Encodings (``n_words`` = K, descriptor length = D):

``"bovw"``
    Hard-assignment histogram of visual words (K values), as term
    frequencies, optionally weighted by inverse document frequency.
``"vlad"``
    Sum of residuals to the nearest word, per word (K * D values), each word's
    block L2-normalised ("intra-normalisation", Arandjelovic and Zisserman 2013).
``"fisher"``
    Improved Fisher vector (Perronnin et al. 2010): gradients with respect to
    the means and standard deviations of a diagonal Gaussian mixture
    (2 * K * D values).

Every encoding is then power-normalised (signed square root, optional) and
L2-normalised. With a spatial pyramid, the image and its four quadrants are
encoded separately and concatenated before normalisation (5 times the length).
An image without descriptors encodes to a row of zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from .._vectors import l2_normalise

ENCODINGS = ("bovw", "vlad", "fisher")
REGIONS = ("all", "q1", "q2", "q3", "q4")
_FULL_KMEANS_MAX_WORDS = 256


@dataclass
class Codebook:
    """A learned vocabulary and how to encode with it.

    ``BagOfVisualWords.fit`` learns one and keeps it as ``codebook_``.

    Attributes
    ----------
    encoding : {"bovw", "vlad", "fisher"}
        How descriptors become one vector.
    centers : ndarray of shape (n_words, n_dims)
        The visual words: k-means centres, or the mixture's means for Fisher
        vectors (in PCA space when there is a PCA).
    spatial_pyramid : bool
        Whether the four quadrants are encoded too.
    power_norm : bool
        Whether the signed square root is applied before L2 normalisation.
    idf : ndarray of shape (n_words,) or None
        Inverse document frequencies (``tfidf=True`` only).
    pca_mean : ndarray of shape (n_input_dims,) or None
        Mean of the descriptors, if they are reduced by PCA.
    pca_components : ndarray of shape (n_dims, n_input_dims) or None
        The PCA's axes, if any.
    weights : ndarray of shape (n_words,) or None
        The Gaussian mixture's weights (Fisher vectors only).
    variances : ndarray of shape (n_words, n_dims) or None
        The Gaussian mixture's diagonal variances (Fisher vectors only).
    """

    encoding: str
    centers: np.ndarray
    spatial_pyramid: bool = False
    power_norm: bool = True
    idf: np.ndarray | None = None
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    weights: np.ndarray | None = None
    variances: np.ndarray | None = None

    @cached_property
    def squared_norms(self) -> np.ndarray:
        """Squared length of each centre, reused by every nearest-word search."""
        return (self.centers**2).sum(axis=1)

    @property
    def n_words(self) -> int:
        """Vocabulary size."""
        return self.centers.shape[0]

    @property
    def n_dims(self) -> int:
        """Length of a descriptor after the PCA, if any."""
        return self.centers.shape[1]

    @property
    def region_length(self) -> int:
        """Length of the encoding of one region (the image or a quadrant)."""
        per_word = {"bovw": 1, "vlad": self.n_dims, "fisher": 2 * self.n_dims}
        return self.n_words * per_word[self.encoding]

    @property
    def n_features(self) -> int:
        """Length of the encoded vectors."""
        return self.region_length * (len(REGIONS) if self.spatial_pyramid else 1)

    def project(self, descriptors: np.ndarray) -> np.ndarray:
        """Apply the learned descriptor PCA, if any."""
        if self.pca_components is None:
            return descriptors
        return (descriptors - self.pca_mean) @ self.pca_components.T

    def encode(self, positions: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """Encode one image's descriptors into a float32 vector of ``n_features``."""
        descriptors = self.project(descriptors)
        regions = _region_masks(positions) if self.spatial_pyramid else [slice(None)]
        blocks = [self._encode_region(descriptors[mask]) for mask in regions]
        vector = np.concatenate(blocks)
        if self.power_norm:
            vector = np.sign(vector) * np.sqrt(np.abs(vector))
        return l2_normalise(vector[np.newaxis])[0].astype(np.float32)

    def keypoint_parts(self, positions: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """What each descriptor adds to one image's encoding, before power and L2 normalisation.

        Every encoding is a sum over the image's descriptors (a histogram
        count, a residual, a Fisher gradient term), which is then
        normalised. Row ``k`` is descriptor ``k``'s term, so the rows add
        up to the encoding before normalisation; :func:`fusionrec.explain`
        splits a classifier's score among keypoints with them. VLAD's
        per-word normalisation, which depends on all of an image's
        descriptors, is applied to each term.

        Parameters
        ----------
        positions : ndarray of shape (n, 2) or None
            Keypoint centres as fractions of width and height (needed with
            ``spatial_pyramid``).
        descriptors : ndarray of shape (n, n_input_dims)

        Returns
        -------
        ndarray of shape (n, n_features), float32
        """
        descriptors = self.project(descriptors)
        regions = _region_masks(positions) if self.spatial_pyramid else [slice(None)]
        parts = np.zeros((len(descriptors), self.n_features), np.float32)
        for region, mask in enumerate(regions):
            columns = slice(region * self.region_length, (region + 1) * self.region_length)
            if len(descriptors[mask]):
                parts[mask, columns] = self._region_parts(descriptors[mask])
        return parts

    def _encode_region(self, descriptors: np.ndarray) -> np.ndarray:
        if len(descriptors) == 0:
            return np.zeros(self.region_length)
        if self.encoding == "fisher":
            return self._fisher(descriptors)
        words = nearest_words(descriptors, self.centers, self.squared_norms)
        if self.encoding == "vlad":
            return self._vlad(descriptors, words)
        return np.bincount(words, minlength=self.n_words) * self._histogram_scale(len(words))

    def _region_parts(self, descriptors: np.ndarray) -> np.ndarray:
        """Per descriptor, its term of :meth:`_encode_region` (the rows add up to it)."""
        n = len(descriptors)
        if self.encoding == "fisher":
            x = descriptors.astype(np.float64)
            mean_term, sigma_term = self._fisher_terms(x[:, None, :], self.posteriors(x)[..., None])
            return np.concatenate([mean_term.reshape(n, -1), sigma_term.reshape(n, -1)], axis=1)
        words = nearest_words(descriptors, self.centers, self.squared_norms)
        if self.encoding == "vlad":
            residuals = descriptors - self.centers[words]
            scaled = residuals / _lengths(self._residual_sums(residuals, words))[words]
            parts = np.zeros((n, self.n_words, self.n_dims))
            parts[np.arange(n), words] = scaled
            return parts.reshape(n, -1)
        parts = np.zeros((n, self.n_words))
        parts[np.arange(n), words] = self._histogram_scale(n)[words]
        return parts

    def _histogram_scale(self, n: int) -> np.ndarray:
        """Each word's count becomes a term frequency, weighted by its idf if any."""
        scale = np.full(self.n_words, 1.0 / n)
        return scale * self.idf if self.idf is not None else scale

    def _vlad(self, descriptors: np.ndarray, words: np.ndarray) -> np.ndarray:
        summed = self._residual_sums(descriptors - self.centers[words], words)
        return (summed / _lengths(summed)).ravel()

    def _residual_sums(self, residuals: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Each word's summed residual, ``(n_words, n_dims)``."""
        summed = np.zeros_like(self.centers, dtype=np.float64)
        np.add.at(summed, words, residuals)
        return summed

    def _fisher(self, descriptors: np.ndarray) -> np.ndarray:
        x = descriptors.astype(np.float64)
        posteriors = self.posteriors(x)
        weight_of_word = posteriors.sum(axis=0)[:, None]
        first = posteriors.T @ x
        second = posteriors.T @ (x * x)
        mean_sum = first - weight_of_word * self.centers
        centred_square = second - 2 * first * self.centers + weight_of_word * self.centers**2
        sigma_sum = centred_square / self.variances - weight_of_word
        mean_term, sigma_term = self._fisher_scaled(
            mean_sum / np.sqrt(self.variances), sigma_sum, len(x)
        )
        return np.concatenate([mean_term.ravel(), sigma_term.ravel()])

    def _fisher_terms(self, x: np.ndarray, posteriors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each descriptor's Fisher gradient terms, ``(n, n_words, n_dims)`` twice.

        ``x`` is ``(n, 1, n_dims)`` and ``posteriors`` ``(n, n_words, 1)``;
        summed over descriptors they give :meth:`_fisher`'s two halves.
        """
        centred = x - self.centers
        mean_sum = posteriors * centred / np.sqrt(self.variances)
        sigma_sum = posteriors * (centred**2 / self.variances - 1.0)
        return self._fisher_scaled(mean_sum, sigma_sum, len(x))

    def _fisher_scaled(
        self, mean_sum: np.ndarray, sigma_sum: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The improved Fisher vector's scaling of its mean and sigma gradients."""
        mean_scale = n * np.sqrt(self.weights)[:, None]
        sigma_scale = n * np.sqrt(2 * self.weights)[:, None]
        return mean_sum / mean_scale, sigma_sum / sigma_scale

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """Soft assignments of descriptors to the mixture's components."""
        precision = 1.0 / self.variances
        log_density = -0.5 * (
            (x * x) @ precision.T
            - 2.0 * x @ (self.centers * precision).T
            + (self.centers**2 * precision).sum(axis=1)
            + np.log(self.variances).sum(axis=1)
            + self.n_dims * np.log(2 * np.pi)
        )
        log_joint = log_density + np.log(self.weights)
        log_joint -= log_joint.max(axis=1, keepdims=True)
        joint = np.exp(log_joint)
        return joint / joint.sum(axis=1, keepdims=True)

    def feature_names(self) -> list[str]:
        """One name per output column, e.g. ``vlad_q2_w5_d17``."""
        if self.encoding == "bovw":
            per_region = [f"w{word}" for word in range(self.n_words)]
        else:
            dims = [f"w{word}_d{dim}" for word in range(self.n_words) for dim in range(self.n_dims)]
            per_region = (
                dims
                if self.encoding == "vlad"
                else [f"{part}_{name}" for part in ("mu", "sigma") for name in dims]
            )
        regions = REGIONS if self.spatial_pyramid else ("",)
        return [
            "_".join(part for part in (self.encoding, region, name) if part)
            for region in regions
            for name in per_region
        ]


def nearest_words(
    descriptors: np.ndarray, centers: np.ndarray, squared_norms: np.ndarray | None = None
) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for each descriptor."""
    if squared_norms is None:
        squared_norms = (centers**2).sum(axis=1)
    return np.argmin(squared_norms - 2.0 * descriptors @ centers.T, axis=1)


def _lengths(rows: np.ndarray) -> np.ndarray:
    """Each row's length as a column, at least 1e-12 (VLAD's intra-normalisation)."""
    return np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _region_masks(positions: np.ndarray) -> list[np.ndarray]:
    right = positions[:, 0] >= 0.5
    bottom = positions[:, 1] >= 0.5
    every = np.ones(len(positions), dtype=bool)
    return [every, ~right & ~bottom, right & ~bottom, ~right & bottom, right & bottom]


def learn_codebook(
    sample: np.ndarray,
    image_of_sample: np.ndarray,
    *,
    encoding: str,
    n_words: int,
    spatial_pyramid: bool,
    power_norm: bool,
    tfidf: bool,
    pca_components: int | None,
    random_state: np.random.RandomState,
) -> Codebook:
    """Learn a vocabulary from a sample of descriptors.

    Parameters
    ----------
    sample : ndarray of shape (n_descriptors, n_dims)
    image_of_sample : ndarray of shape (n_descriptors,)
        Which image each sampled descriptor came from (for document frequencies).
    """
    pca_mean = pca_axes = None
    if pca_components is not None:
        pca = PCA(n_components=pca_components, random_state=random_state).fit(sample)
        pca_mean, pca_axes = pca.mean_, pca.components_
        sample = pca.transform(sample)
    fields = {"pca_mean": pca_mean, "pca_components": pca_axes}
    if encoding == "fisher":
        mixture = GaussianMixture(
            n_components=n_words,
            covariance_type="diag",
            reg_covar=1e-4,
            init_params="k-means++",
            max_iter=100,
            random_state=random_state,
        ).fit(sample)
        fields |= {
            "centers": mixture.means_,
            "weights": mixture.weights_,
            "variances": mixture.covariances_,
        }
    else:
        kind = KMeans if n_words <= _FULL_KMEANS_MAX_WORDS else MiniBatchKMeans
        options = {"n_init": 1} if kind is KMeans else {"n_init": 3, "batch_size": 4096}
        # float64: scikit-learn's k-means++ upcasts float32 in small slow chunks
        kmeans = kind(n_clusters=n_words, random_state=random_state, **options)
        kmeans.fit(sample.astype(np.float64))
        fields["centers"] = kmeans.cluster_centers_.astype(np.float32)
    codebook = Codebook(
        encoding=encoding, spatial_pyramid=spatial_pyramid, power_norm=power_norm, **fields
    )
    if tfidf:
        codebook.idf = _inverse_document_frequency(sample, image_of_sample, codebook)
    return codebook


def _inverse_document_frequency(
    sample: np.ndarray, image_of_sample: np.ndarray, codebook: Codebook
) -> np.ndarray:
    """Smoothed idf of each word, estimated from the sampled descriptors."""
    words = nearest_words(sample, codebook.centers)
    images = np.unique(image_of_sample)
    pairs = np.unique(np.stack([image_of_sample, words]), axis=1)
    document_frequency = np.bincount(pairs[1], minlength=codebook.n_words)
    return np.log((1 + len(images)) / (1 + document_frequency)) + 1.0
