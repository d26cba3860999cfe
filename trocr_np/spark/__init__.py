"""trocr-np as Spark ML stages: the production pipeline's code runs as printed against this package.

    from pyspark.ml import PipelineModel
    from trocr_np.spark import BinaryToImage, Color, ImageDrawRegions, ImageTextDetectorV2, ImageToTextV2, ImageType

    binary_to_image = BinaryToImage().setImageType(ImageType.TYPE_3BYTE_BGR)
    text_detector = ImageTextDetectorV2.pretrained().setInputCol("image").setOutputCol("text_regions") \\
        .setSizeThreshold(-1).setLinkThreshold(0.3).setWidth(500)
    ocr = ImageToTextV2.pretrained().setInputCols(["image", "text_regions"]).setGroupImages(True) \\
        .setOutputCol("text").setRegionsColumn("text_regions")
    draw_regions = ImageDrawRegions().setInputCol("image").setInputRegionsCol("text_regions") \\
        .setOutputCol("image_with_regions").setRectColor(Color.green).setRotated(True)
    pipeline = PipelineModel(stages=[binary_to_image, text_detector, ocr, draw_regions])
    result = pipeline.transform(spark.read.format("binaryFile").load(path)).cache()

Needs the `spark` extra (pyspark, pandas < 3, pyarrow); nothing else in trocr-np imports this package.
The stages are in `stages.py`, what runs on the executors in `worker.py`; README "Run on Spark" says
how to ship trocr-np to a cluster and set the threads.
"""
from pyspark.ml import PipelineModel

from .stages import (BinaryToImage, Color, ImageDrawRegions, ImageTextDetectorV2, ImageToTextV2, ImageType,
                     SIZE_THRESHOLD)

__all__ = ["BinaryToImage", "Color", "ImageDrawRegions", "ImageTextDetectorV2", "ImageToTextV2", "ImageType",
           "PipelineModel", "SIZE_THRESHOLD"]
