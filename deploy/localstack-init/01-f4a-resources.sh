#!/usr/bin/env bash
# LocalStack "ready" init hook (docker-compose.yml mounts this folder at
# /etc/localstack/init/ready.d): creates what deploy/cloudformation.yaml creates in AWS, minus
# ECS/IAM details LocalStack does not need:
#   bucket F4A_NAME, queue F4A_NAME with redrive to F4A_NAME-dlq (maxReceiveCount 5, visibility 300 s
#   like the worker), queue policy for S3, ObjectCreated notification for keys under data/, and
#   Firehose delivery stream F4A_NAME (GZIP, data/ prefix; Firehose adds YYYY/MM/DD/HH/).
# Idempotent. When it has finished it writes $F4A_READY_FILE, which the compose health check
# waits for. Outside the container (tests) set AWSLOCAL="aws --endpoint-url=http://127.0.0.1:4566".
set -euo pipefail

NAME="${F4A_NAME:-f4a-indexer}"
REGION="${AWS_DEFAULT_REGION:-us-east-1}"
ACCOUNT="${F4A_ACCOUNT:-000000000000}"
VISIBILITY="${F4A_VISIBILITY_TIMEOUT:-300}"
READY_FILE="${F4A_READY_FILE:-/tmp/f4a-init-done}"
read -r -a AWSL <<<"${AWSLOCAL:-awslocal}"
aws_() { "${AWSL[@]}" --region "$REGION" --output text "$@"; }
log() { echo "[f4a-init] $*" >&2; }

rm -f "$READY_FILE"

# Bucket (us-east-1 takes no LocationConstraint).
if ! aws_ s3api head-bucket --bucket "$NAME" >/dev/null 2>&1; then
  aws_ s3api create-bucket --bucket "$NAME" >/dev/null
  log "bucket $NAME"
fi

# Queues. create-queue is idempotent for equal attributes; set-queue-attributes converges.
DLQ_URL="$(aws_ sqs create-queue --queue-name "$NAME-dlq" --query QueueUrl)"
DLQ_ARN="$(aws_ sqs get-queue-attributes --queue-url "$DLQ_URL" --attribute-names QueueArn --query Attributes.QueueArn)"
QUEUE_URL="$(aws_ sqs create-queue --queue-name "$NAME" --query QueueUrl)"
QUEUE_ARN="$(aws_ sqs get-queue-attributes --queue-url "$QUEUE_URL" --attribute-names QueueArn --query Attributes.QueueArn)"
ATTRS="$(python3 - "$QUEUE_ARN" "$DLQ_ARN" "$NAME" "$VISIBILITY" <<'PY'
import json, sys
queue_arn, dlq_arn, bucket, visibility = sys.argv[1:]
policy = {"Version": "2012-10-17", "Statement": [{
    "Sid": "AllowS3ObjectCreated", "Effect": "Allow",
    "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": queue_arn,
    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}}}]}
print(json.dumps({
    "VisibilityTimeout": visibility,
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    "Policy": json.dumps(policy),
}))
PY
)"
aws_ sqs set-queue-attributes --queue-url "$QUEUE_URL" --attributes "$ATTRS"
log "queue $QUEUE_URL (dead-letter queue $DLQ_URL)"

# S3 -> SQS for data/ only (Firehose error objects go to errors/). Every put sends an
# s3:TestEvent to the queue (the worker logs and deletes it).
aws_ s3api put-bucket-notification-configuration --bucket "$NAME" --notification-configuration \
  "{\"QueueConfigurations\":[{\"Id\":\"f4a-object-created\",\"QueueArn\":\"$QUEUE_ARN\",\"Events\":[\"s3:ObjectCreated:*\"],\"Filter\":{\"Key\":{\"FilterRules\":[{\"Name\":\"prefix\",\"Value\":\"data/\"}]}}}]}"
log "notification s3://$NAME/data/ -> $NAME"

# Firehose. LocalStack does not enforce IAM but the API needs a role ARN. LocalStack 4.9 does
# not evaluate !{timestamp:...} prefix expressions, so use the static prefix (both LocalStack
# and Firehose then add YYYY/MM/DD/HH/), and it ignores GZIP and buffering (README).
if ! aws_ firehose describe-delivery-stream --delivery-stream-name "$NAME" >/dev/null 2>&1; then
  aws_ firehose create-delivery-stream --delivery-stream-name "$NAME" --delivery-stream-type DirectPut \
    --extended-s3-destination-configuration \
    "{\"RoleARN\":\"arn:aws:iam::$ACCOUNT:role/$NAME-firehose\",\"BucketARN\":\"arn:aws:s3:::$NAME\",\"Prefix\":\"data/\",\"ErrorOutputPrefix\":\"errors/\",\"CompressionFormat\":\"GZIP\",\"BufferingHints\":{\"IntervalInSeconds\":60,\"SizeInMBs\":5}}" >/dev/null
  log "delivery stream $NAME"
fi
for _ in $(seq 1 60); do
  status="$(aws_ firehose describe-delivery-stream --delivery-stream-name "$NAME" --query DeliveryStreamDescription.DeliveryStreamStatus)"
  [[ "$status" == ACTIVE ]] && break
  sleep 1
done
[[ "$status" == ACTIVE ]] || { log "delivery stream $NAME is $status"; exit 1; }

touch "$READY_FILE"
log "ready: SQS_QUEUE_URL=$QUEUE_URL"
