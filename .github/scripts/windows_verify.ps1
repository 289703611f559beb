# Windows's own verdict on kmssign's signatures (Windows acceptance job).
#
#   windows_verify.ps1 -List signed-files.txt -Tampered tampered.exe
#
# Every file named in -List must pass `signtool verify /pa /all /tw /v` (exit 0: /tw
# turns a missing timestamp into a warning, exit 2) and Get-AuthenticodeSignature must
# say Valid; the -Tampered file (one signed byte changed) must fail signtool with
# TRUST_E_BAD_DIGEST (0x80096010) and Get-AuthenticodeSignature must say HashMismatch.
# Every failure is reported, then the script exits 1.
param(
    [Parameter(Mandatory = $true)][string]$List,
    [Parameter(Mandatory = $true)][string]$Tampered
)

# GitHub's pwsh steps set 'Stop'; native tools' stderr must not end the script here.
$ErrorActionPreference = 'Continue'

function Find-SignTool {
    # signtool ships with the Windows SDK: Windows Kits\10\bin\<version>\x64\signtool.exe.
    # Take the newest SDK version present; fall back to PATH.
    $kits = Join-Path ${env:ProgramFiles(x86)} 'Windows Kits\10\bin'
    $found = Get-ChildItem -Path $kits -Filter signtool.exe -Recurse -ErrorAction SilentlyContinue |
        Where-Object { $_.Directory.Name -eq 'x64' -and $_.Directory.Parent.Name -match '^\d+(\.\d+){3}$' } |
        Sort-Object { [version]$_.Directory.Parent.Name } -Descending |
        Select-Object -First 1
    if ($found) { return $found.FullName }
    $command = Get-Command signtool.exe -ErrorAction SilentlyContinue
    if ($command) { return $command.Source }
    throw "signtool.exe not found under $kits nor on PATH"
}

$signtool = Find-SignTool
Write-Host "signtool: $signtool"
$files = @(Get-Content -LiteralPath $List | Where-Object { $_.Trim() })
if ($files.Count -eq 0) { throw "$List names no file" }
$failures = [System.Collections.Generic.List[string]]::new()

foreach ($file in $files) {
    $output = & $signtool verify /pa /all /tw /v $file 2>&1 | Out-String
    $code = $LASTEXITCODE
    $status = (Get-AuthenticodeSignature -LiteralPath $file).Status
    Write-Host "$file : signtool exit $code, Get-AuthenticodeSignature $status"
    if ($code -ne 0) {
        Write-Host $output
        $failures.Add("signtool verify /pa /all /tw: $file (exit $code)")
    }
    if ("$status" -ne 'Valid') { $failures.Add("Get-AuthenticodeSignature: $file is $status") }
}

$output = & $signtool verify /pa /all /tw /v $Tampered 2>&1 | Out-String
$code = $LASTEXITCODE
$status = (Get-AuthenticodeSignature -LiteralPath $Tampered).Status
Write-Host "$Tampered (one byte changed): signtool exit $code, Get-AuthenticodeSignature $status"
# TRUST_E_BAD_DIGEST: 'WinVerifyTrust returned error: 0x80096010 ... did not verify'
if ($code -eq 0 -or $output -notmatch '0x80096010|did not verify') {
    Write-Host $output
    $failures.Add("signtool did not report the changed byte as a bad digest (0x80096010)")
}
if ("$status" -ne 'HashMismatch') { $failures.Add("Get-AuthenticodeSignature: tampered file is $status") }

if ($failures.Count) {
    foreach ($failure in $failures) { Write-Host "::error::$failure" }
    exit 1
}
Write-Host "$($files.Count) signed files verified by Windows; the changed byte was caught"
exit 0
