-- 008 instance tensors: a series several routes take is normalised once per recipe, so an instance has one
-- tensor (with its sidecar and preview) per recipe. imaging.instances.tensor_key and preview_key keep the
-- first recipe's, as before; this table lists every recipe's. Workers pick the tensor of their model's
-- input recipe here.
CREATE TABLE imaging.tensors (
    sop_instance_uid text NOT NULL REFERENCES imaging.instances (sop_instance_uid) ON DELETE CASCADE,
    recipe           text NOT NULL,
    tensor_key       text NOT NULL,
    tensor_sha256    text NOT NULL,
    sidecar_key      text,
    preview_key      text,
    preview_sha256   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sop_instance_uid, recipe)
);
CREATE INDEX tensors_recipe_idx ON imaging.tensors (recipe);
GRANT SELECT, INSERT, UPDATE, DELETE ON imaging.tensors TO dicom_etl_daemon;
GRANT SELECT ON imaging.tensors TO dicom_etl_worker, analyst;
