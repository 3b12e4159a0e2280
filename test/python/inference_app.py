#!/usr/bin/env python3
"""A real inference server of the user's shape (seed 002: FastAPI + uvicorn + transformers, on the
CPU here), for test/deploy-real.test.ts: the same routes as mstore's stand-in
(scripts/inference-standin.ts), but register loads the directory with from_pretrained and /generate
runs the active model.

    GET  /health             {"status": "ok", "active_model": NAME|null, "models": N}
    GET  /models             {"models": [{"name", "path", "active", "registered_at"}], "active": NAME|null}
    POST /models/register    {"name", "path"}: AutoModelForCausalLM.from_pretrained(path); 404 when the
                             path is missing, 422 when it does not load
    POST /models/set_active  {"name"}: 404 for an unknown name
    POST /generate           {"input_ids": [int...], "max_tokens"?: N} -> {"model", "tokens"}: greedy
                             decoding of the active model (the prompt and the new tokens); 503 without one

    python3 inference_app.py PORT
"""
import os
import sys
import threading
from datetime import datetime, timezone

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from transformers import AutoModelForCausalLM

app = FastAPI()
lock = threading.Lock()
models = {}  # name -> {"path", "model", "registered_at"}
active = {"name": None}


class Register(BaseModel):
    name: str
    path: str


class SetActive(BaseModel):
    name: str


class Generate(BaseModel):
    input_ids: list[int]
    max_tokens: int = 12


@app.get("/health")
def health():
    return {"status": "ok", "active_model": active["name"], "models": len(models)}


@app.get("/models")
def list_models():
    return {
        "models": [
            {"name": n, "path": m["path"], "active": n == active["name"], "registered_at": m["registered_at"]}
            for n, m in models.items()
        ],
        "active": active["name"],
    }


@app.post("/models/register")
def register(r: Register):
    if not os.path.isdir(r.path):
        raise HTTPException(status_code=404, detail=f"{r.path}: no such directory")
    try:
        model = AutoModelForCausalLM.from_pretrained(r.path).eval()
    except Exception as e:  # noqa: BLE001 - any load failure is the client's 422
        raise HTTPException(status_code=422, detail=f"{r.path}: {type(e).__name__}: {e}")
    with lock:
        models[r.name] = {"path": r.path, "model": model, "registered_at": datetime.now(timezone.utc).isoformat()}
    return {"registered": r.name}


@app.post("/models/set_active")
def set_active(r: SetActive):
    with lock:
        if r.name not in models:
            raise HTTPException(status_code=404, detail=f"unknown model {r.name}")
        active["name"] = r.name
    return {"active": r.name}


@app.post("/generate")
def generate(r: Generate):
    with lock:
        name = active["name"]
        if name is None:
            raise HTTPException(status_code=503, detail="no active model")
        model = models[name]["model"]
    with torch.no_grad():
        out = model.generate(torch.tensor([r.input_ids]), max_new_tokens=r.max_tokens, do_sample=False, pad_token_id=0)
    return {"model": name, "tokens": out[0].tolist()}


if __name__ == "__main__":
    # A keep-alive longer than any test: uvicorn's 5 s default closed idle connections that the
    # test's HTTP client was about to reuse for a POST ("fetch failed" under CI load).
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", timeout_keep_alive=600)
