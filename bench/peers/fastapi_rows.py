"""The FastAPI + XGBoost peer (../shared/peers/fastapi-xgboost/app.py) for a
model of feature rows: the same idioms — pickled XGBoost loaded at startup,
X-API-Key check, pydantic validation, one-row pandas DataFrame ->
predict_proba per request — on a creditcard.csv-style row (Time, V1..V28,
Amount). Used by bench/serve_rows_vs_peer.sh."""
import os
from typing import Literal

import joblib
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, create_model

MODEL_PATH = os.environ["MODEL_PATH"]
API_KEY = os.environ.get("API_KEY", "bench-key")
FEATURES = ["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount"]

app = FastAPI(title="Fraud Detection API", version="1.0.0")
model = joblib.load(MODEL_PATH)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def verify_api_key(api_key: str = Security(api_key_header)) -> str:
    if api_key != API_KEY:
        raise HTTPException(status_code=401, detail="Invalid or missing API key")
    return api_key


Row = create_model("Row", transaction_id=(str, ...), **{name: (float, ...) for name in FEATURES})


class PredictionResponse(BaseModel):
    fraud_probability: float
    is_fraud: bool
    confidence: Literal["HIGH", "MEDIUM", "LOW"]


def confidence_of(p: float) -> str:
    if p > 0.8:
        return "HIGH"
    if p > 0.5:
        return "MEDIUM"
    return "LOW"


@app.get("/health")
async def health():
    return {"status": "healthy", "model_loaded": model is not None}


@app.post("/predict", response_model=PredictionResponse)
async def predict(row: Row, _: str = Depends(verify_api_key)):
    features = pd.DataFrame([row.model_dump()])[FEATURES]
    proba = float(model.predict_proba(features)[0][1])
    return PredictionResponse(fraud_probability=proba, is_fraud=proba > 0.5, confidence=confidence_of(proba))
