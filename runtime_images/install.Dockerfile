# The install and final stages of every base image (cpu, gpu, inf): doinfer appends
# them, without this comment, to the processor's own `python` stage (its python.Dockerfile;
# engine/runtimes/image_names.py: dockerfile). A processor's own settings for the final
# image are ENV lines of its `python` stage, which the final stage starts from.

FROM python AS install
COPY wheelhouse /wheelhouse
RUN python3 -m venv /opt/doinfer \
 && /opt/doinfer/bin/pip install --no-index --no-cache-dir --find-links /wheelhouse \
      -r /wheelhouse/requirements.txt

FROM python
COPY --from=install /opt/doinfer /opt/doinfer
ENV PATH=/opt/doinfer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
