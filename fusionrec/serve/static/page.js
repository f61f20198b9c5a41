// The search-by-photo page: send a photo to /search (and /classify), show what comes back.
"use strict";

const page = {
  health: null,
  queryUrl: null,
  element: (id) => document.getElementById(id),
};

function showError(message) {
  const box = page.element("error");
  box.textContent = message;
  box.hidden = !message;
}

async function askFor(path, photo) {
  const form = new FormData();
  form.append("file", photo, photo.name || "photo.jpg");
  const answer = await fetch(path, { method: "POST", body: form });
  const body = await answer.json();
  if (!answer.ok) {
    throw new Error(body.detail || `the server answered ${answer.status}`);
  }
  return body;
}

async function search(photo) {
  showError("");
  if (page.queryUrl) URL.revokeObjectURL(page.queryUrl);
  page.queryUrl = URL.createObjectURL(photo);
  const preview = page.element("query-preview");
  preview.src = page.queryUrl;
  preview.hidden = false;
  page.element("drop-hint").textContent = "Drop or click for another photo";

  const k = page.element("k-input").value || "8";
  const rerank = page.element("rerank-input").checked;
  document.body.dataset.state = "searching";
  try {
    const asks = [askFor(`search?k=${encodeURIComponent(k)}&rerank=${rerank}`, photo)];
    if (page.health && page.health.classify) asks.push(askFor("classify?top=5", photo));
    const [found, recognised] = await Promise.all(asks);
    showHits(found);
    showProduct(recognised);
    document.body.dataset.state = "done";
    if (recognised) await showExplanation(photo);
  } catch (error) {
    showError(error.message);
    document.body.dataset.state = "failed";
  }
}

function showHits(found) {
  const list = page.element("results");
  list.replaceChildren();
  page.element("matches").hidden = true;
  for (const hit of found.results) {
    const card = document.createElement("li");
    card.className = "hit";
    card.dataset.id = hit.id;
    const picture = hit.photo ? document.createElement("img") : document.createElement("div");
    if (hit.photo) {
      picture.src = hit.photo;
      picture.alt = String(hit.id);
    } else {
      picture.className = "no-photo";
      picture.textContent = "no photo";
    }
    const id = document.createElement("p");
    id.className = "id";
    id.textContent = hit.id;
    const score = document.createElement("p");
    score.className = "score";
    score.textContent = `similarity ${hit.score.toFixed(3)}`
      + (hit.inliers === undefined ? "" : ` · ${hit.inliers} verified matches`);
    card.append(picture, id, score);
    if (hit.matches && hit.matches.length && hit.photo) {
      card.classList.add("has-matches");
      card.title = "Show the verified keypoint matches";
      card.addEventListener("click", () => drawMatches(hit, card));
    }
    list.append(card);
  }
  page.element("similar").hidden = false;
  const first = found.results.find((hit) => hit.matches && hit.matches.length && hit.photo);
  if (first) drawMatches(first, list.querySelector(`[data-id="${CSS.escape(String(first.id))}"]`));
}

function showProduct(recognised) {
  const section = page.element("product");
  if (!recognised) {
    section.hidden = true;
    return;
  }
  const [best] = recognised.products;
  page.element("product-label").textContent = best.label;
  const list = page.element("product-list");
  list.replaceChildren();
  for (const product of recognised.products) {
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = product.label;
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.display = "block";
    bar.style.width = `${Math.max(1, product.probability * 100)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.textContent = `${(product.probability * 100).toFixed(1)}%`;
    row.append(name, track, value);
    list.append(row);
  }
  page.element("shares").textContent = describeShares(recognised);
  section.hidden = false;
}

async function showExplanation(photo) {
  const picture = page.element("explanation");
  picture.hidden = true;
  const form = new FormData();
  form.append("file", photo, photo.name || "photo.jpg");
  const answer = await fetch("explain", { method: "POST", body: form });
  if (!answer.ok) return;  // the numbers above stand without the picture
  if (picture.src) URL.revokeObjectURL(picture.src);
  picture.src = URL.createObjectURL(await answer.blob());
  await loaded(picture.src);
  picture.hidden = false;
  document.body.dataset.explained = "yes";
}

function describeShares(recognised) {
  const shares = recognised.shares;
  if (!shares) return "";
  if (shares.fusion === "early") {
    const parts = shares.parts;
    return `Decision score ${shares.decision.toFixed(2)} = keypoints ${parts.traditional.toFixed(2)}`
      + ` + CNN ${parts.deep.toFixed(2)} + intercept ${parts.intercept.toFixed(2)}`;
  }
  const best = recognised.products[0].label;
  const traditional = shares.probabilities.traditional;
  const deep = shares.probabilities.deep;
  return `${best}: keypoints say ${(traditional * 100).toFixed(1)}% (weight`
    + ` ${shares.weights.traditional.toFixed(2)}), CNN says ${(deep * 100).toFixed(1)}%`
    + ` (weight ${shares.weights.deep.toFixed(2)})`;
}

function loaded(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("a photo could not be shown"));
    image.src = url;
  });
}

async function drawMatches(hit, card) {
  for (const other of document.querySelectorAll(".hit.selected")) other.classList.remove("selected");
  if (card) card.classList.add("selected");
  const [query, item] = await Promise.all([loaded(page.queryUrl), loaded(hit.photo)]);
  const height = 300;
  const gap = 24;
  const queryWidth = Math.round((query.naturalWidth / query.naturalHeight) * height);
  const itemWidth = Math.round((item.naturalWidth / item.naturalHeight) * height);
  const canvas = page.element("match-canvas");
  canvas.width = queryWidth + gap + itemWidth;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.fillStyle = "white";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(query, 0, 0, queryWidth, height);
  context.drawImage(item, queryWidth + gap, 0, itemWidth, height);
  context.lineWidth = 1.5;
  hit.matches.forEach(([qx, qy, ix, iy], n) => {
    const from = [qx * queryWidth, qy * height];
    const to = [queryWidth + gap + ix * itemWidth, iy * height];
    context.strokeStyle = `hsl(${(n * 47) % 360} 85% 45%)`;
    context.beginPath();
    context.moveTo(...from);
    context.lineTo(...to);
    context.stroke();
    for (const [x, y] of [from, to]) {
      context.beginPath();
      context.arc(x, y, 2.5, 0, 2 * Math.PI);
      context.stroke();
    }
  });
  page.element("match-id").textContent = `${hit.id} (${hit.matches.length})`;
  page.element("matches").hidden = false;
}

function photoFrom(files) {
  const photo = files && files[0];
  if (photo) search(photo);
}

async function start() {
  for (const id of ["file-input", "camera-input"]) {
    page.element(id).addEventListener("change", (event) => photoFrom(event.target.files));
  }
  const zone = page.element("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    photoFrom(event.dataTransfer.files);
  });
  try {
    const answer = await fetch("health");
    page.health = await answer.json();
    const health = page.health;
    const rerank = page.element("rerank-input");
    rerank.disabled = !health.rerank;
    rerank.checked = health.reranks_by_default;
    page.element("k-input").max = health.max_k;
    page.element("status").textContent = `${health.items} catalogue photos`
      + (health.classify ? " · recognises products" : "")
      + (health.rerank ? " · keypoint verification available" : "");
    document.body.dataset.state = "ready";
  } catch (error) {
    showError(`The server does not answer: ${error.message}`);
  }
}

start();
