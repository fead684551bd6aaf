output "repository_url" {
  description = "Push images here: <url>:<tag>."
  value       = aws_ecr_repository.this.repository_url
}

output "repository_arn" {
  description = "The repository, for IAM policies."
  value       = aws_ecr_repository.this.arn
}
