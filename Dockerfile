# touchflow's API and worker image: one install, the process chosen by the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY touchflow touchflow
COPY workflows workflows
COPY activities activities
COPY channels channels
COPY api api
COPY templates templates
RUN pip install --no-cache-dir ".[otel]" && useradd --create-home touchflow
USER touchflow
ENV TOUCHFLOW_API_HOST=0.0.0.0
EXPOSE 8000 8001
CMD ["touchflow", "api"]
