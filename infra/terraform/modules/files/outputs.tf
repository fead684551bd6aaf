output "bucket_name" {
  description = "The bucket: FILES_S3_BUCKET."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "The bucket, for IAM policies."
  value       = aws_s3_bucket.this.arn
}
