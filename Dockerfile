# Dinosaurus: the API, its training worker and the shipped models in one small image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DINO_STORE_DIR=/var/lib/dinosaurus

WORKDIR /srv/dinosaurus
COPY pyproject.toml README.md ./
COPY app ./app
COPY model_store/dinos ./model_store/dinos
COPY model_store/shakespeare ./model_store/shakespeare
COPY data ./data
RUN pip install --no-cache-dir . \
 && useradd --system --home-dir /srv/dinosaurus dino \
 && mkdir -p "$DINO_STORE_DIR" && chown dino "$DINO_STORE_DIR"

USER dino
EXPOSE 8000
VOLUME ["/var/lib/dinosaurus"]
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
